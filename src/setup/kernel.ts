import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { paths, projectRoot } from '../paths.js';
import { buildOnce, inputsKey } from './cache.js';
import { progress } from './progress.js';
import { runCommand } from './run-command.js';

const kernelDir = () => join(projectRoot, 'kernel');
export const kernelSource = () => process.env.VMBOX_KERNEL_SOURCE || '/usr/src/linux-source-6.1.tar.xz';

/** Where the kernel for the current inputs lives, whether or not it is built yet. */
export function kernelCacheDir(): string {
  const key = inputsKey([
    { file: join(kernelDir(), 'build.sh') },
    { file: join(kernelDir(), 'vmbox.config') },
    { fileStat: kernelSource() },
  ]);
  return join(paths.cache(), 'kernel', key);
}

/** Builds the guest kernel if its inputs changed; returns the vmlinux path. */
export async function ensureKernel(): Promise<string> {
  if (!existsSync(kernelSource())) {
    throw new VmboxError('hostSetup', `${kernelSource()} is missing: run ./vmbox once as root (it installs linux-source-6.1)`);
  }
  const dir = kernelCacheDir();
  if (existsSync(join(dir, 'vmlinux'))) return join(dir, 'vmlinux');
  mkdirSync(join(paths.cache(), 'kernel'), { recursive: true });
  const logPath = `${dir}.log`;
  progress(`building the guest kernel (once, about 5 minutes on 2 cores); log: ${logPath}`);
  const log = createWriteStream(logPath);
  const started = Date.now();
  try {
    await buildOnce(dir, 'vmlinux', (tmp) =>
      runCommand('bash', [join(kernelDir(), 'build.sh'), tmp], {
        onLine: (line) => {
          log.write(`${line}\n`);
          if (line.startsWith('kernel:')) progress(line);
        },
      }),
    );
  } catch (err) {
    throw new VmboxError('kernelBuildFailed', `the guest kernel build failed; see ${logPath}\n${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    log.end();
  }
  progress(`guest kernel ready in ${Math.round((Date.now() - started) / 1000)} s`);
  return join(dir, 'vmlinux');
}
