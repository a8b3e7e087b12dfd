import { setTimeout as sleep } from 'node:timers/promises';
import { VmboxError } from '../../errors.js';
import type { QmpClient } from './qmp.js';

/**
 * Device state in and out of a QEMU through QMP migration. With the RAM in a
 * file (`memory-backend-file`) and `x-ignore-shared`, only the device state
 * travels: the memory file is the rest of the snapshot. QEMU 7.2 has no
 * `file:` migration URI, so the state goes through `exec:` and a shell.
 */
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

const IGNORE_SHARED = [{ capability: 'x-ignore-shared', state: true }];

/** Pauses the guest and writes its device state to `path`; the VM stays paused. */
export async function saveState(qmp: QmpClient, path: string, timeoutMs = 60_000): Promise<void> {
  await qmp.execute('stop', {});
  await qmp.execute('migrate-set-capabilities', { capabilities: IGNORE_SHARED });
  await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(path)}` });
  await waitForMigration(qmp, timeoutMs);
}

/** Loads the device state a VM started with `-incoming defer` waits for, then runs it. */
export async function restoreState(qmp: QmpClient, path: string, timeoutMs = 60_000): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: IGNORE_SHARED });
  await qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(path)}` });
  await waitForMigration(qmp, timeoutMs);
  await qmp.execute('cont', {});
}

async function waitForMigration(qmp: QmpClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; Date.now() < deadline; i++) {
    const s = await qmp.execute('query-migrate', {});
    if (s.status === 'completed' || (s.status === undefined && i > 0)) return;
    if (s.status === 'failed' || s.status === 'cancelled') {
      throw new VmboxError('vmDied', `saving or restoring the VM's state failed: ${s['error-desc'] ?? s.status}`);
    }
    await sleep(i < 20 ? 5 : 50);
  }
  throw new VmboxError('vmDied', `saving or restoring the VM's state took longer than ${timeoutMs} ms`);
}
