import { accessSync, chmodSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VmboxError } from './errors.js';

/** Root of everything vmbox writes: `$VMBOX_HOME`, default `~/.vmbox`. */
export function vmboxHome(): string {
  return resolve(process.env.VMBOX_HOME || join(homedir(), '.vmbox'));
}

export const paths = {
  cache: () => join(vmboxHome(), 'cache'),
  images: () => join(vmboxHome(), 'images'),
  sandboxes: () => join(vmboxHome(), 'sandboxes'),
  sandbox: (id: string) => join(vmboxHome(), 'sandboxes', id),
  snapshots: () => join(vmboxHome(), 'snapshots'),
  snapshot: (id: string) => join(vmboxHome(), 'snapshots', id),
  /** Named volumes: one directory each, shared by the sandboxes that mount it. */
  volumes: () => join(vmboxHome(), 'volumes'),
  /** Images booted to "agent ready" and saved, which warm creates restore. */
  templates: () => join(vmboxHome(), 'templates'),
  /** The server's API socket (mode 0600). */
  socket: () => process.env.VMBOX_SOCKET || join(vmboxHome(), 'vmbox.sock'),
  /** The running server's pid, also its lock. */
  serverPid: () => join(vmboxHome(), 'server.pid'),
  serverLog: () => join(vmboxHome(), 'server.log'),
};

/**
 * The checkout or package root (holds `kernel/` and `agent/`): the nearest
 * directory above this file's that has `kernel/vmbox.config` (this file may
 * be `src/paths.ts` or any bundled chunk under `dist/`).
 */
export const projectRoot = findRoot(fileURLToPath(new URL('.', import.meta.url)));

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'kernel', 'vmbox.config'))) return dir;
    if (dirname(dir) === dir) return resolve(from, '..');
  }
}

/** Creates `$VMBOX_HOME` if needed; a clear error when this user cannot write it. */
export function ensureHome(): string {
  const home = vmboxHome();
  try {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    accessSync(home, constants.W_OK);
    // The state database, the token and the sockets are the server's alone: no jailed QEMU's uid reads them.
    if ((statSync(home).mode & 0o077) !== 0) {
      try {
        chmodSync(home, 0o700);
      } catch {} // a home someone else owns keeps its mode
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new VmboxError('hostSetup', `cannot write ${home} (${code}): set VMBOX_HOME to a directory you can write`);
  }
  return home;
}
