import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { promisify } from 'node:util';
import { SpecError, VmboxError } from '../errors.js';

const run = promisify(execFile);
const MIB = 1024 * 1024;

/**
 * A qcow2 overlay over a read-only base disk (an image's raw disk, or a
 * template's or snapshot's qcow2 layer): the sandbox's writable root, copying nothing. `sizeMib` makes its virtual size larger than the base's
 * (the guest agent grows the file system into it at boot); never smaller.
 */
export async function createOverlay(
  basePath: string,
  overlayPath: string,
  sizeMib?: number,
  baseFormat: 'raw' | 'qcow2' | 'vmdk' = 'raw',
): Promise<void> {
  if (sizeMib !== undefined) {
    const baseMib = Math.ceil(statSync(basePath).size / MIB);
    if (sizeMib < baseMib) {
      throw new SpecError(
        'diskMib',
        `must be at least ${baseMib} MiB (the image's own disk), got ${sizeMib}: ask for more, or leave it out to get the image's size`,
      );
    }
  }
  const size = sizeMib === undefined ? [] : [`${sizeMib}M`];
  try {
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', basePath, '-F', baseFormat, overlayPath, ...size]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new VmboxError('qemuMissing', 'qemu-img is not installed: run ./vmbox once as root, or apt-get install qemu-utils');
    throw new VmboxError('hostSetup', `cannot create the sandbox disk: ${e.stderr?.trim() || e.message}`);
  }
}
