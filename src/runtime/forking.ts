import { randomBytes } from 'node:crypto';
import type { SandboxInfo } from '../spec/sandboxes.js';
import type { ForkRequest } from '../spec/snapshots.js';
import { checkTransition } from './lifecycle.js';
import type { SandboxManager } from './manager.js';

/**
 * Running copies of a running sandbox, which carries on as it was: its memory,
 * devices and disk are copied at one instant (the guest paused only for the
 * last pass) into a hidden snapshot the copies are restored from and layered
 * on; it goes with the last of them. All or nothing: a copy that fails takes
 * the others with it.
 */
/**
 * From how many copies a fork first makes its snapshot's memory a file they
 * share. Measured here (512 MiB, TCG): making the file takes 0.4–0.5 s, ten
 * copies of it about as long again — the time ten copies loading the whole state
 * take — while each holds its own ~100 MiB when they load it; for a few copies
 * the file only adds its time.
 */
const SHARED_FROM = 8;

export async function forkSandbox(m: SandboxManager, ref: string, req: ForkRequest = {}): Promise<SandboxInfo[]> {
  const parent = m.find(ref);
  checkTransition(parent.name, parent.state, 'fork');
  const count = req.names?.length ?? req.count ?? 1;
  const { snapshot } = await m.snapshots.create(parent.id, { hidden: true, name: `fork-${randomBytes(6).toString('hex')}` });
  if (count >= SHARED_FROM) {
    // Many copies: made from a memory file they share (each maps it and loads the devices alone),
    // in about the time they take to load the whole state each, holding the memory once.
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
