import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { VmboxError } from '../errors.js';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * Resolves `rel` inside `root` the way the guest will see it: symlinks are
 * followed but scoped to `root` (an absolute target means `root`, `..` stops at
 * `root`), so no entry of a hostile layer can reach outside the staging root.
 */
export function secureResolve(root: string, rel: string, followLast: boolean): string {
  const queue = rel.split('/').filter((p) => p && p !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (queue.length > 0) {
    const part = queue.shift() as string;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, part);
    let isLink = false;
    try {
      isLink = lstatSync(candidate).isSymbolicLink();
    } catch {}
    if (isLink && (queue.length > 0 || followLast)) {
      if (++links > 40) throw new VmboxError('invalidArgument', `layer path ${rel}: too many levels of symbolic links`);
      const target = readlinkSync(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      queue.unshift(...target.split('/').filter((p) => p && p !== '.'));
      continue;
    }
    resolved.push(part);
  }
  return join(root, ...resolved);
}

function removeAny(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

function existing(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Applies one layer (an uncompressed tar stream) on top of `root`: whiteouts,
 * opaque directories, hardlinks, symlinks, devices, ownership and modes.
 * Extended attributes are not applied: Node has no API to set them.
 */
export async function applyLayer(root: string, tar: Readable): Promise<void> {
  const ex = extract();
  const created = new Set<string>(); // paths this layer made: opaque markers spare them
  const opaque: string[] = []; // directories with an opaque marker, relative to the root
  tar.on('error', (err) => ex.destroy(err));
  tar.pipe(ex);
  for await (const entry of ex) {
    await applyEntry(root, entry.header, entry as unknown as EntryBody, created, opaque);
  }
  // Opaque directories hide what lower layers had there, but not what this layer added.
  for (const rel of opaque) {
    // Resolved now, not at the marker: a later entry may have made the directory (or one above it) a link out of the root.
    const dir = secureResolve(root, rel, true);
    for (const name of readdirSafe(dir)) {
      const p = join(dir, name);
      if (!created.has(p)) removeAny(p);
    }
  }
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The body of one tar entry (a streamx readable). */
type EntryBody = AsyncIterable<Buffer> & { resume(): unknown };

async function applyEntry(root: string, h: Header, stream: EntryBody, created: Set<string>, opaque: string[]): Promise<void> {
  // A pax record can put a NUL byte in a name, which no file system call takes (Node throws a TypeError).
  if (h.name.includes('\0') || h.linkname?.includes('\0')) {
    throw new VmboxError('invalidArgument', `layer entry ${JSON.stringify(h.name)}: a NUL byte in its name or link target`);
  }
  const name = posix.normalize(`/${h.name}`).slice(1); // absolute and ../ paths are clamped to the root
  const base = basename(name);
  const parent = secureResolve(root, dirname(name), true);
  if (base === OPAQUE) {
    opaque.push(dirname(name));
    stream.resume();
    return;
  }
  if (base.startsWith(WHITEOUT)) {
    const hidden = base.slice(WHITEOUT.length);
    // `.wh.`, `.wh..` and `.wh...` would name the directory itself or its parent (above the root, at the top).
    if (!hidden || hidden === '.' || hidden === '..') throw new VmboxError('invalidArgument', `layer whiteout ${name} names no file`);
    removeAny(join(parent, hidden));
    stream.resume();
    return;
  }
  if (!name) {
    stream.resume();
    return; // the root itself
  }
  // Base-256 header numbers can say anything: an owner the kernel cannot hold is the layer's error, not a RangeError.
  for (const id of [h.uid, h.gid]) {
    if (id !== undefined && !(Number.isInteger(id) && id >= 0 && id < 0xffffffff)) {
      throw new VmboxError('invalidArgument', `layer entry ${name}: owner ${h.uid}:${h.gid} is out of range`);
    }
  }
  mkdirSync(parent, { recursive: true });
  const dest = join(parent, base);
  const prior = existing(dest);
  const mode = (h.mode ?? 0o644) & 0o7777;
  if (h.type === 'directory') {
    if (prior && !prior.isDirectory()) removeAny(dest);
    if (!prior?.isDirectory()) mkdirSync(dest);
  } else {
    if (prior) removeAny(dest);
    switch (h.type) {
      case 'file':
      case 'contiguous-file':
        await writeFile(dest, stream, mode);
        break;
      case 'symlink':
        symlinkSync(h.linkname ?? '', dest);
        break;
      case 'link': {
        const target = secureResolve(root, posix.normalize(`/${h.linkname ?? ''}`).slice(1), false);
        if (!existing(target)?.isFile()) throw new VmboxError('invalidArgument', `layer hardlink ${name} → ${h.linkname}: target missing`);
        linkSync(target, dest);
        break;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        const kind = h.type === 'fifo' ? ['p'] : [h.type === 'block-device' ? 'b' : 'c', String(h.devmajor ?? 0), String(h.devminor ?? 0)];
        const r = spawnSync('mknod', [dest, ...kind]);
        if (r.status !== 0) throw new VmboxError('ioError', `cannot create device ${name}: ${r.stderr.toString().trim()}`);
        break;
      }
      default:
        stream.resume();
        return; // pax and GNU meta entries are consumed by tar-stream; others carry nothing to write
    }
  }
  stream.resume();
  created.add(dest);
  if (h.type === 'link') return; // a hardlink shares its target's inode, owner and mode
  lchownSync(dest, h.uid ?? 0, h.gid ?? 0);
  if (h.type !== 'symlink') chmodSync(dest, mode); // after chown, which clears set-id bits
  if (h.mtime && h.type !== 'directory') lutimesSync(dest, h.mtime, h.mtime);
}

async function writeFile(dest: string, stream: EntryBody, mode: number): Promise<void> {
  // 'wx' = O_CREAT|O_EXCL: never writes through a symlink that appeared in the way.
  const fd = openSync(dest, 'wx', mode);
  try {
    for await (const chunk of stream) {
      const buf = chunk;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off);
    }
  } finally {
    closeSync(fd);
  }
}
