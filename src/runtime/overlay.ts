import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { VmboxError } from '../errors.js';

const run = promisify(execFile);

/** A qcow2 overlay over a read-only base disk: the sandbox's writable root, copying nothing. */
export async function createOverlay(basePath: string, overlayPath: string): Promise<void> {
  try {
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', basePath, '-F', 'raw', overlayPath]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new VmboxError('qemuMissing', 'qemu-img is not installed: run ./vmbox once as root, or apt-get install qemu-utils');
    throw new VmboxError('hostSetup', `cannot create the sandbox disk: ${e.stderr?.trim() || e.message}`);
  }
}
