import { chmodSync, createReadStream, createWriteStream, rmSync } from 'node:fs';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmboxError } from '../../errors.js';
import type { QmpClient, QmpEvent } from './qmp.js';

/**
 * A VM's state in and out of a QEMU through QMP migration. Two kinds of state:
 * a whole one (memory and devices), or, from a VM whose RAM is a shared file,
 * the devices alone (`x-ignore-shared`: the memory file is the rest, and a VM
 * that maps it privately loads just the devices). Both ends of one state must
 * agree on `x-ignore-shared`: `skipShared` says which kind.
 *
 * The state goes over a unix socket in the VM's run folder, the server at the
 * other end reading or writing the file: QEMU 7.2 has no `file:` URI, and its
 * `exec:` one needs a shell, which a QEMU under its seccomp filter (spawn=deny)
 * cannot start — nor should it see where states are kept.
 */
const ignoreShared = (on: boolean) => [{ capability: 'x-ignore-shared', state: on }];

/**
 * QEMU 7.2 caps migration at 128 MiB/s by default, meant for a network link;
 * to a local file that cap is the whole cost. The downtime limit is the longest
 * a live save may pause the guest for its last pass.
 */
async function prepareSave(qmp: QmpClient, skipShared: boolean): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: ignoreShared(skipShared) });
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 ** 3, 'downtime-limit': 50 });
}

/** Pauses the guest and writes its state to `path` (its devices alone with `skipShared`); the VM stays paused. */
export async function saveState(qmp: QmpClient, path: string, socket: string, skipShared: boolean, timeoutMs = 60_000): Promise<void> {
  await qmp.execute('stop', {});
  await prepareSave(qmp, skipShared);
  const sink = await receiveState(socket, path);
  try {
    await qmp.execute('migrate', { uri: `unix:${socket}` });
    await waitForMigration(qmp, timeoutMs);
    await sink.written;
  } finally {
    sink.close();
  }
}

/**
 * Listens on `socket` for QEMU's outgoing state and writes it to `path`. The
 * socket is open to any uid, as the jailed QEMU has its own: the run folder
 * around it is that QEMU's and 0700.
 */
async function receiveState(socket: string, path: string): Promise<{ written: Promise<void>; close(): void }> {
  rmSync(socket, { force: true });
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  chmodSync(socket, 0o666);
  const written = new Promise<void>((resolve, reject) => {
    server.once('connection', (conn) => {
      server.close();
      pipeline(conn, createWriteStream(path)).then(resolve, reject);
    });
  });
  written.catch(() => {});
  return {
    written,
    close: () => {
      server.close();
      rmSync(socket, { force: true });
    },
  };
}

/** Streams the state in `path` to the QEMU listening on `socket` (`migrate-incoming`). */
async function sendState(socket: string, path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const conn = await new Promise<net.Socket>((resolve, reject) => {
        const c = net.createConnection(socket, () => {
          c.off('error', reject);
          resolve(c);
        });
        c.once('error', reject);
      });
      await pipeline(createReadStream(path), conn);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // QEMU makes its listening socket as it takes `migrate-incoming`: until then there is nothing to connect to.
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw err;
      await sleep(2);
    }
  }
}

/**
 * Writes a running guest's memory and devices to `path` while it keeps running
 * (QEMU's pre-copy: memory goes first, then what the guest dirtied meanwhile),
 * pausing it only for the last pass. The VM is left paused, its disks flushed and
 * released, so the caller can copy them at the same instant; `cont` resumes it.
 * Returns how long the last pass paused the guest, as QEMU measured it.
 */
export async function saveLive(
  qmp: QmpClient,
  path: string,
  socket: string,
  timeoutMs = 60_000,
): Promise<{ downtimeMs: number; stoppedAt: number }> {
  await prepareSave(qmp, false);
  const sink = await receiveState(socket, path);
  // QEMU's STOP event says when the guest really stopped (its own clock, the host's wall time).
  let stoppedAt = 0;
  const onEvent = (e: QmpEvent) => {
    if (e.event === 'STOP') stoppedAt = e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;
  };
  qmp.on('event', onEvent);
  try {
    await qmp.execute('migrate', { uri: `unix:${socket}` });
    const done = await waitForMigration(qmp, timeoutMs);
    await sink.written;
    return { downtimeMs: done.downtime ?? 0, stoppedAt: stoppedAt || Date.now() - (done.downtime ?? 0) };
  } finally {
    qmp.off('event', onEvent);
    sink.close();
  }
}

/** Loads the state a VM started with `-incoming defer` waits for, then runs it (unless `run` is false). */
export async function restoreState(
  qmp: QmpClient,
  path: string,
  socket: string,
  opts: { skipShared: boolean; run: boolean },
  timeoutMs = 60_000,
): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: ignoreShared(opts.skipShared) });
  rmSync(socket, { force: true });
  await qmp.execute('migrate-incoming', { uri: `unix:${socket}` });
  // Sent while QEMU loads it: a failed load closes the socket, and the wait below says why.
  const sent = sendState(socket, path, timeoutMs);
  sent.catch(() => {});
  await waitForMigration(qmp, timeoutMs);
  await sent.catch(() => {});
  rmSync(socket, { force: true });
  // Completed is reported once the loaded VM has left `inmigrate`: `cont` now runs it, not just marks it to run.
  const { status } = await qmp.execute('query-status', {});
  if (status === 'inmigrate') throw new VmboxError('vmDied', 'the restored VM is still loading its state after the migration completed');
  if (opts.run) await qmp.execute('cont', {});
}

async function waitForMigration(qmp: QmpClient, timeoutMs: number): Promise<{ downtime?: number }> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    const s = await qmp.execute('query-migrate', {});
    // No status yet is a migration that has not begun: an incoming one begins only once its
    // first bytes arrive. Taking that for the end let a resume run a guest whose devices were
    // still loading, and the agent never heard the host's hello.
    if (s.status === 'completed') return s;
    if (s.status === 'failed' || s.status === 'cancelled') {
      throw new VmboxError('vmDied', `saving or restoring the VM's state failed: ${s['error-desc'] ?? s.status}`);
    }
    // Every millisecond polled is one the guest may stay paused (a live save) or idle (a restore) for.
    await sleep(Date.now() - start < 3000 ? 1 : 20);
  }
  throw new VmboxError('vmDied', `saving or restoring the VM's state took longer than ${timeoutMs} ms`);
}
