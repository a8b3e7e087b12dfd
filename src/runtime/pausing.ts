import { renameSync, rmSync, statSync } from 'node:fs';
import { VmboxError } from '../errors.js';
import type { SandboxInfo } from '../spec/sandboxes.js';
import { checkTransition } from './lifecycle.js';
import type { SandboxManager } from './manager.js';
import { refuseSavingMounts } from './mounts.js';

/**
 * Pause and resume. A pause saves a running sandbox's whole VM — memory,
 * devices and disk at one instant — and ends its QEMU: no process and no
 * memory held. A resume restores it under the same id.
 */
export async function pauseSandbox(m: SandboxManager, ref: string, reason = 'paused by request'): Promise<SandboxInfo> {
  const rec = m.find(ref);
  checkTransition(rec.name, rec.state, 'pause');
  refuseSavingMounts(rec.spec, rec.name, 'be paused');
  if (!m.liveOf(rec.id)) throw new VmboxError('invalidState', `sandbox ${rec.name} has no VM attached: restart it`);
  m.db.update(rec.id, { state: 'stopping', reason: 'pausing' });
  const live = m.detach(rec.id) as NonNullable<ReturnType<SandboxManager['detach']>>;
  const state = m.pausedState(rec.id);
  try {
    // Written aside and renamed once whole: a state file that exists is a complete one (recovery relies on it).
    await live.save(`${state}.tmp`, reason);
    renameSync(`${state}.tmp`, state);
  } catch (err) {
    await live.shutdown({ timeoutMs: 1000, reason: 'pausing failed' });
    rmSync(`${state}.tmp`, { force: true });
    m.ended(rec.id, 'failed', `pausing failed: ${(err as Error).message}`);
    throw err;
  }
  m.db.update(rec.id, { state: 'paused', reason, pid: null, stoppedAt: Date.now() });
  m.system(rec.id, `paused: memory and devices saved (${Math.round(statSync(state).size / 1048576)} MiB), the VM ended`);
  return m.get(rec.id);
}

export async function resumeSandbox(m: SandboxManager, ref: string, opts: { signal?: AbortSignal } = {}): Promise<SandboxInfo> {
  const rec = m.find(ref);
  checkTransition(rec.name, rec.state, 'resume');
  const state = m.pausedState(rec.id);
  m.db.update(rec.id, { state: 'starting', reason: null });
  try {
    await m.bootInto({ ...rec, state: 'starting' }, { signal: opts.signal, restoreFrom: state });
  } catch (err) {
    // The saved state is untouched: the sandbox stays paused and can be resumed again.
    m.db.update(rec.id, { state: 'paused', reason: `resume failed: ${(err as Error).message}`, pid: null });
    throw err;
  }
  rmSync(state, { force: true });
  return m.get(rec.id);
}
