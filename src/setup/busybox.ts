import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { paths, projectRoot } from '../paths.js';
import { buildOnce, inputsKey } from './cache.js';
import { progress } from './progress.js';
import { runCommand } from './run-command.js';

const busyboxDir = () => join(projectRoot, 'busybox');
/** The Debian package whose source and version the base image's busybox is built from. */
const PACKAGE_BINARY = '/bin/busybox';

/** Where the busybox for the current inputs lives, whether or not it is built yet. */
/** By cache directory: reading and hashing the inputs each time cost every base-image lookup a little. */
const cacheDirs = new Map<string, string>();

export function busyboxCacheDir(): string {
  const known = cacheDirs.get(paths.cache());
  if (known) return known;
  const key = inputsKey([
    { file: join(busyboxDir(), 'build.sh') },
    { file: join(busyboxDir(), 'vmbox.config') },
    { fileStat: PACKAGE_BINARY },
  ]);
  const dir = join(paths.cache(), 'busybox', key);
  cacheDirs.set(paths.cache(), dir);
  return dir;
}

/**
 * Builds the base image's busybox from the source of the installed
 * busybox-static package, with the options of busybox/vmbox.config (Debian's
 * own binary crashes on `wget -T`); returns the binary's path.
 */
export async function ensureBusybox(): Promise<string> {
  if (!existsSync(PACKAGE_BINARY))
    throw new VmboxError('hostSetup', `${PACKAGE_BINARY} is missing: run ./vmbox once as root (it installs busybox-static)`);
  const dir = busyboxCacheDir();
  if (existsSync(join(dir, 'busybox'))) return join(dir, 'busybox');
  mkdirSync(join(paths.cache(), 'busybox'), { recursive: true });
  const logPath = `${dir}.log`;
  progress(`building busybox for the base image (once, about 3 minutes on 2 cores); log: ${logPath}`);
  try {
    // One build across processes (checkouts share the cache): buildOnce holds the
    // entry's lock, and a second asker waits, then finds it built.
    await buildOnce(dir, 'busybox', async (tmp) => {
      const log = createWriteStream(logPath);
      try {
        await runCommand('bash', [join(busyboxDir(), 'build.sh'), tmp], {
          onLine: (line) => {
            log.write(`${line}\n`);
            if (line.startsWith('busybox:')) progress(line);
          },
        });
      } finally {
        log.end();
      }
    });
  } catch (err) {
    throw new VmboxError('hostSetup', `building busybox for the base image failed; see ${logPath}\n${(err as Error).message}`, {
      cause: err,
    });
  }
  return join(dir, 'busybox');
}
