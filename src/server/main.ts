import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { ensureHome, paths } from '../paths.js';
import { SandboxManager } from '../runtime/manager.js';
import { StateDb } from '../runtime/state.js';
import { isAlive } from '../util/process.js';
import { buildApp } from './app.js';

export interface ServeOptions {
  /** `host:port` for the TCP listener (bearer token required); none by default. */
  listen?: string;
  /** Where the token is kept; generated (0600) on first start. Default `$VMBOX_HOME/token`. */
  tokenFile?: string;
}

export interface RunningServer {
  socketPath: string;
  tcpAddress?: string;
  close(): Promise<void>;
}

/**
 * `vmbox serve`: one server per `$VMBOX_HOME` (a pid lock), state in
 * `state.db`, the API on `vmbox.sock` (0600) and optionally on TCP. Stopping
 * the server leaves the sandboxes' VMs running; the next server reattaches.
 */
export async function serve(opts: ServeOptions = {}): Promise<RunningServer> {
  const home = ensureHome();
  const lock = paths.serverPid();
  takeLock(lock);
  const db = new StateDb(join(home, 'state.db'));
  const manager = new SandboxManager(db);
  try {
    await manager.recover();
    const token = opts.listen ? loadToken(opts.tokenFile ?? join(home, 'token')) : undefined;
    const { app, tcp } = await buildApp(manager, { token });
    const socketPath = paths.socket();
    rmSync(socketPath, { force: true });
    const umask = process.umask(0o177); // the socket is born 0600
    try {
      await app.listen({ path: socketPath });
    } finally {
      process.umask(umask);
    }
    chmodSync(socketPath, 0o600);
    let tcpAddress: string | undefined;
    if (opts.listen) {
      const m = /^(.*):(\d+)$/.exec(opts.listen);
      if (!m) throw new VmboxError('invalidArgument', `--listen ${opts.listen}: expected host:port, e.g. 127.0.0.1:7070`);
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(Number(m[2]), (m[1] ?? '').replace(/^\[|\]$/g, ''), resolve);
      });
      const a = tcp.address();
      tcpAddress = typeof a === 'object' && a ? `${a.address}:${a.port}` : opts.listen;
    }
    let closed = false;
    return {
      socketPath,
      tcpAddress,
      async close() {
        if (closed) return;
        closed = true;
        tcp.close();
        tcp.closeAllConnections();
        await app.close();
        manager.close();
        db.close();
        rmSync(socketPath, { force: true });
        rmSync(lock, { force: true });
      },
    };
  } catch (err) {
    manager.close();
    db.close();
    rmSync(lock, { force: true });
    throw err;
  }
}

/** One server per home: the pid file is taken over only from a dead owner. */
function takeLock(path: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(readFileSync(path, 'utf8') || 0);
      if (owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new VmboxError('invalidState', `a vmbox server is already running (pid ${owner}) for ${paths.socket()}`);
      }
      rmSync(path, { force: true });
    }
  }
  throw new VmboxError('invalidState', `cannot take the server lock ${path}`);
}

function loadToken(file: string): string {
  try {
    const t = readFileSync(file, 'utf8').trim();
    if (t) return t;
  } catch {}
  const t = randomBytes(24).toString('base64url');
  writeFileSync(file, `${t}\n`, { mode: 0o600 });
  return t;
}
