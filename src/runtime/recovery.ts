import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { paths } from '../paths.js';
import { Machine } from './machine.js';
import type { SandboxManager } from './manager.js';
import type { SandboxRecord } from './state.js';

/**
 * What a starting server does about the sandboxes of the one before it:
 * adopts the VMs still running, records the ones that died meanwhile, and
 * finishes or undoes what was half-done when it stopped.
 */
export async function recoverSandboxes(m: SandboxManager): Promise<void> {
  await Promise.all(m.db.list().map((rec) => recoverOne(m, rec)));
  sweepStrayDirs(m);
}

const UP: readonly string[] = ['running', 'stopping', 'starting'];

async function recoverOne(m: SandboxManager, rec: SandboxRecord): Promise<void> {
  // The VMM may have been spawned before its pid was recorded: the provider looks for it by id too.
  const vm = m.provider.adopt({ id: rec.id, runDir: m.dir(rec.id), pid: rec.pid });
  if (rec.removing || rec.state === 'creating' || rec.owner === 'connection') {
    // Half-made or half-removed: finish removing it. One owned by a client's
    // connection lost its owner with the previous server: it goes too.
    await vm?.stop({ timeoutMs: 0 });
    m.forget(rec.id);
    return;
  }
  if (!UP.includes(rec.state)) {
    if (rec.spec.ephemeral) m.forget(rec.id);
    return;
  }
  // A pause cut short leaves its state half-written: only a renamed (whole) one counts.
  rmSync(`${m.pausedState(rec.id)}.tmp`, { force: true });
  if (!vm && existsSync(m.pausedState(rec.id))) {
    // A pause finished its save, or a resume never got its VM going: the saved state is whole.
    m.db.update(rec.id, { state: 'paused', reason: 'paused (settled after a server restart)', pid: null });
    return;
  }
  if (!vm) {
    m.ended(rec.id, 'stopped', 'the VM exited while the server was down');
    return;
  }
  try {
    // A server that died mid-snapshot or mid-fork left the guest paused for its disk copy: it runs on.
    await vm.resume().catch(() => {});
    const machine = await Machine.adopt(vm, rec.spec);
    const network = await m.networking.attach(rec, machine, { lenient: true });
    m.db.update(rec.id, { state: 'running', pid: vm.pid });
    m.adopt(rec, machine, network);
    m.system(rec.id, `reattached to the running VM (pid ${vm.pid}) after a server restart`);
    // A stop cut short is finished; a pause cut short is not (its VM and memory are whole: it runs on).
    if (rec.state === 'stopping' && rec.reason !== 'pausing') await m.stop(rec.id, { reason: 'stopped by request' });
  } catch (err) {
    await vm.stop({ timeoutMs: 0 });
    m.ended(rec.id, 'failed', `the VM did not answer after a server restart: ${(err as Error).message}`);
  }
}

/** Removes sandbox directories no row knows of (a crash before the row existed). */
function sweepStrayDirs(m: SandboxManager): void {
  let ids: string[] = [];
  try {
    ids = readdirSync(paths.sandboxes());
  } catch {}
  for (const id of ids) {
    if (m.db.get(id)) continue;
    const dir = m.dir(id);
    try {
      if (Date.now() - statSync(dir).mtimeMs < 60_000) continue;
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  }
}
