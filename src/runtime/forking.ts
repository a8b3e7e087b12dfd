import { randomBytes } from 'node:crypto';
import type { SandboxInfo } from '../spec/sandboxes.js';
import type { ForkRequest } from '../spec/snapshots.js';
import { checkTransition } from './lifecycle.js';
import type { SandboxManager } from './manager.js';

/**
 * Running copies of a running sandbox, which carries on as it was: its memory,
 * devices and disk are copied at one instant (the guest paused only for the
 * last pass) into a hidden snapshot the copies are restored from and layered
 * on; it goes with the last of them. Each copy loads the whole state, or maps
 * a memory file made of it first (`shareMemory`; by default from SHARED_FROM
 * copies): then the copies share every page none of them wrote. All or nothing: a copy that fails takes the
 * others with it.
 */
/**
 * From how many copies a fork shares a memory file unless told. Measured side by
 * side here (`npm run bench`, 512 MiB, TCG, two runs): ten copies sharing one
 * took 1.0–1.5 s and 23 MiB Pss each, ten loading the whole state 1.4 s and
 * 108 MiB each; for one copy the file only adds its time (~0.2–0.5 s).
 */
const SHARED_FROM = 4;

/** What the copies differ in beyond the request: who made them (an E2B key), how long they live. */
export interface ForkAs {
  apiKey?: string;
  maxDurationMs?: number;
}

export async function forkSandbox(m: SandboxManager, ref: string, req: ForkRequest = {}, as: ForkAs = {}): Promise<SandboxInfo[]> {
  const parent = m.find(ref);
  checkTransition(parent.name, parent.state, 'fork');
  const count = req.names?.length ?? req.count ?? 1;
  const { snapshot } = await m.snapshots.create(parent.id, { hidden: true, name: `fork-${randomBytes(6).toString('hex')}` });
  if (req.shareMemory ?? count >= SHARED_FROM) {
    // Made from a memory file they share (each maps it and loads the devices alone): the memory is
    // held once, for the time the file takes to make first.
    m.snapshots.memories.soon(snapshot, true);
    await m.snapshots.memories.settled(snapshot.id);
  }
  const made = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      m.create(
        {
          snapshot: snapshot.id,
          ...(req.names?.[i] ? { name: req.names[i] } : {}),
          ...(req.labels ? { labels: req.labels } : {}),
          ...(as.maxDurationMs ? { maxDurationMs: as.maxDurationMs } : {}),
        },
        { hostPaths: true, fork: { parent: parent.id }, apiKey: as.apiKey },
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
