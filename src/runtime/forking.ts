import { randomBytes } from 'node:crypto';
import type { SandboxInfo } from '../spec/sandboxes.js';
import type { ForkRequest } from '../spec/snapshots.js';
import { checkTransition } from './lifecycle.js';
import type { SandboxManager } from './manager.js';

/**
 * Running copies of a running sandbox, which carries on as it was: its memory,
 * devices and disk are copied at one instant (the guest paused only for the
 * last pass) into a hidden snapshot the copies are restored from and layered
 * on; it goes with the last of them. Each copy loads the whole state (quickest),
 * or with `shareMemory` maps a memory file made of it first (the copies share
 * every page none of them wrote). All or nothing: a copy that fails takes the
 * others with it.
 */
export async function forkSandbox(m: SandboxManager, ref: string, req: ForkRequest = {}): Promise<SandboxInfo[]> {
  const parent = m.find(ref);
  checkTransition(parent.name, parent.state, 'fork');
  const count = req.names?.length ?? req.count ?? 1;
  const { snapshot } = await m.snapshots.create(parent.id, { hidden: true, name: `fork-${randomBytes(6).toString('hex')}` });
  if (req.shareMemory) {
    // Made from a memory file they share (each maps it and loads the devices alone): the memory is
    // held once, for the time the file takes to make (measured here: 0.5–0.7 s at 512 MiB).
    m.snapshots.memories.soon(snapshot, true);
    await m.snapshots.memories.settled(snapshot.id);
  }
  const made = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      m.create(
        { snapshot: snapshot.id, ...(req.names?.[i] ? { name: req.names[i] } : {}), ...(req.labels ? { labels: req.labels } : {}) },
        { hostPaths: true, fork: { parent: parent.id } },
      ),
    ),
  );
  const failed = made.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  const infos = made.filter((r): r is PromiseFulfilledResult<SandboxInfo> => r.status === 'fulfilled').map((r) => r.value);
  if (failed) {
    for (const info of infos) await m.remove(info.id, { force: true }).catch(() => {});
    m.snapshots.dropIfUnused(snapshot.id);
    throw failed.reason;
  }
  m.system(parent.id, `forked: ${infos.map((i) => i.name).join(', ')}`);
  return infos;
}
