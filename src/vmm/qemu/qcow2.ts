import { closeSync, openSync, readSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

/**
 * The files a disk image reads through: the image, then its backing file, and
 * that one's, as QEMU opens them (relative names against the image's folder).
 * Read from the qcow2 header itself — a jailed QEMU must be shown every one of
 * them, and this runs at every start, where `qemu-img info` would cost a process.
 */
export function backingChain(path: string, maxDepth = 16): string[] {
  const chain = [path];
  for (let current = path; chain.length <= maxDepth; ) {
    const next = backingFileOf(current);
    if (!next) return chain;
    current = resolve(dirname(current), next);
    chain.push(current);
  }
  return chain;
}

/** The backing file a qcow2 image names, or undefined (none, or not a qcow2 image). */
function backingFileOf(path: string): string | undefined {
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(20);
    if (readSync(fd, header, 0, 20, 0) < 20 || header.readUInt32BE(0) !== QCOW2_MAGIC) return undefined;
    const offset = Number(header.readBigUInt64BE(8));
    const size = header.readUInt32BE(16);
    if (!offset || !size || size > 1023) return undefined;
    const name = Buffer.alloc(size);
    if (readSync(fd, name, 0, size, offset) < size) return undefined;
    return name.toString('utf8');
  } finally {
    closeSync(fd);
  }
}
