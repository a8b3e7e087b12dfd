import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { ensureHome, paths, vmboxHome } from '../paths.js';
import { ImageService } from '../runtime/images.js';
import { SandboxManager } from '../runtime/manager.js';
import { StateDb } from '../runtime/state.js';
import { QemuProvider } from '../vmm/qemu/provider.js';
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
  const pidFile = paths.serverPid();
  const lock = await takeLock(pidFile);
  const db = new StateDb(join(home, 'state.db'));
  const images = new ImageService(db);
  const manager = new SandboxManager({ db, provider: new QemuProvider(), images });
  try {
    await manager.recover();
    const token = opts.listen ? loadToken(opts.tokenFile ?? join(home, 'token')) : undefined;
    const e2bSecret = Buffer.from(loadToken(join(home, 'e2b.secret')));
    const { app, tcp } = await buildApp(manager, images, { token, e2bSecret });
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
        rmSync(pidFile, { force: true });
        lock.close();
      },
    };
  } catch (err) {
    manager.close();
    db.close();
    rmSync(pidFile, { force: true });
    lock.close();
    throw err;
  }
}

/**
 * One server per home. The lock is an abstract unix socket named after the
 * home: binding it is atomic, and the kernel frees it when its holder dies,
 * however it dies. The pid file only tells who holds it.
 */
async function takeLock(pidFile: string): Promise<net.Server> {
  const name = `\0vmbox-server-${createHash('sha256').update(vmboxHome()).digest('hex').slice(0, 32)}`;
  const lock = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      lock.once('error', reject);
      lock.listen(name, resolve);
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    let owner = '';
    try {
      owner = readFileSync(pidFile, 'utf8').trim();
    } catch {}
    throw new VmboxError('invalidState', `a vmbox server is already running${owner ? ` (pid ${owner})` : ''} for ${vmboxHome()}`);
  }
  lock.unref();
  writeFileSync(pidFile, String(process.pid), { mode: 0o600 });
  return lock;
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
