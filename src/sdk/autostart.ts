import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureHome, paths, projectRoot } from '../paths.js';
import { tailLines } from '../util/tail.js';
import { ServerUnavailableError } from './errors.js';

/** The CLI entry that runs `serve`: the bundled CLI when it exists, else the sources through tsx. */
function serverCommand(): string[] {
  if (process.env.VMBOX_SERVER_ENTRY) return [process.env.VMBOX_SERVER_ENTRY];
  const bundle = join(projectRoot, 'dist', 'vmbox.mjs');
  if (existsSync(bundle)) return [bundle];
  return ['--import', 'tsx', join(projectRoot, 'src', 'cli', 'main.ts')];
}

/**
 * The SDK installs without the server's native SQLite module (an optional peer
 * dependency): starting a server from here needs it where that entry resolves it.
 */
function canRunServer(entry: string[]): boolean {
  const script = entry[entry.length - 1] as string;
  try {
    createRequire(script).resolve('better-sqlite3');
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure a server answers on `socketPath`, starting one in the background
 * (detached, output to `$VMBOX_HOME/server.log`) when nobody does. Two callers
 * racing both start one; the server's lock lets one win and both use it.
 */
export async function ensureLocalServer(
  socketPath: string,
  ping: () => Promise<boolean>,
  onStart?: (info: { pid: number; log: string }) => unknown,
): Promise<void> {
  if (existsSync(socketPath) && (await ping())) return;
  const entry = serverCommand();
  if (!canRunServer(entry)) {
    throw new ServerUnavailableError(
      `no vmbox server answers at ${socketPath}, and this installation cannot start one: the server needs better-sqlite3 (npm install better-sqlite3@12), or set VMBOX_URL and VMBOX_TOKEN to a running server`,
    );
  }
  ensureHome();
  const log = paths.serverLog();
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, [...entry, 'serve'], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, VMBOX_SOCKET: socketPath },
  });
  closeSync(fd);
  child.unref();
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const deadline = Date.now() + 30_000;
  let exitSeenAt = 0;
  for (let i = 0; Date.now() < deadline; i++) {
    if (existsSync(socketPath) && (await ping())) {
      if (!exited) onStart?.({ pid: child.pid ?? -1, log });
      return;
    }
    // Ours lost the race to another server: give the winner a moment to answer.
    if (exited && !exitSeenAt) exitSeenAt = Date.now();
    if (exitSeenAt && Date.now() - exitSeenAt > 3000) break;
    await sleep(i < 50 ? 10 : 50);
  }
  throw new ServerUnavailableError(`the vmbox server did not start; its log (${log}) ends with:\n${tailLines(log, 5)}`);
}
