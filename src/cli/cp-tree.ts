import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type Stats } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readlink, rename, stat, symlink, unlink } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ErrorCode, VmboxError } from '../errors.js';
import type { EntryInfo, Files } from '../sdk/files.js';

export interface CopyContext {
  files: Files;
  /** The sandbox's name, to name its paths in messages. */
  sandbox: string;
  /** Make the destination's missing parent directories. */
  parents: boolean;
  /** Host files being written under a temporary name, removed if we are interrupted. */
  temps: Set<string>;
  tally: { files: number; links: number; bytes: number; skipped: string[] };
}

/**
 * Host to guest. A symlink is copied as a symlink, its target kept as it is
 * (never followed, so nothing outside the copied tree comes along), unless
 * it is SRC itself and `follow` is set.
 */
export async function toGuest(cx: CopyContext, src: string, dest: string, follow: boolean): Promise<void> {
  let st = await onHost(src, () => lstat(src));
  if (st.isSymbolicLink() && follow) st = await onHost(src, () => stat(src));
  const existing = await guestInfo(cx, dest);
  const target = existing?.type === 'dir' ? posix.join(dest, basename(src)) : dest;
  if (target === dest) await guestParent(cx, dest);
  await entryToGuest(cx, src, target, st);
}

async function entryToGuest(cx: CopyContext, from: string, to: string, st: Stats): Promise<void> {
  if (st.isDirectory()) await dirToGuest(cx, from, to, st.mode & 0o7777);
  else if (st.isFile()) {
    await inGuest(cx, to, () => cx.files.write(to, createReadStream(from), { mode: st.mode & 0o7777, makeParents: false }));
    cx.tally.files++;
    cx.tally.bytes += st.size;
  } else if (st.isSymbolicLink()) {
    const target = await onHost(from, () => readlink(from));
    await inGuest(cx, to, async () => {
      const there = await guestInfo(cx, to);
      if (there && there.type !== 'dir') await cx.files.remove(to);
      await cx.files.symlink(target, to);
    });
    cx.tally.links++;
  } else cx.tally.skipped.push(`${from} (not a regular file, directory or symlink)`);
}

async function dirToGuest(cx: CopyContext, from: string, to: string, mode: number): Promise<void> {
  const there = await guestInfo(cx, to);
  if (there && there.type !== 'dir') throw refuseDir(`${cx.sandbox}:${to}`, there.type, there.linkTarget);
  if (!there) await inGuest(cx, to, () => cx.files.makeDir(to, { mode }));
  for (const e of await onHost(from, () => readdir(from))) {
    const path = join(from, e);
    await entryToGuest(cx, path, posix.join(to, e), await onHost(path, () => lstat(path)));
  }
}

/** Guest to host, the same rules the other way. */
export async function toHost(cx: CopyContext, src: string, dest: string, follow: boolean): Promise<void> {
  let from = src;
  let info = await inGuest(cx, src, () => cx.files.getInfo(src));
  // The guest's stat does not follow links: follow them here, a bounded number of hops as the kernel does.
  for (let hops = 0; follow && info.type === 'symlink' && info.linkTarget; hops++) {
    if (hops === 40) throw new VmboxError('invalidArgument', `${cx.sandbox}:${src}: too many levels of symbolic links`);
    from = posix.resolve(posix.dirname(from), info.linkTarget);
    info = await inGuest(cx, from, () => cx.files.getInfo(from));
  }
  const into = await stat(dest).then(
    (s) => s.isDirectory(),
    () => false,
  );
  const target = into ? join(dest, posix.basename(src)) : dest;
  if (!into) await hostParent(cx, target);
  await entryToHost(cx, { ...info, path: from }, target);
}

async function entryToHost(cx: CopyContext, e: EntryInfo, to: string): Promise<void> {
  if (e.type === 'dir') await dirToHost(cx, e, to);
  else if (e.type === 'file') await fileToHost(cx, e, to);
  else if (e.type === 'symlink') {
    const target = e.linkTarget ?? (await inGuest(cx, e.path, () => cx.files.getInfo(e.path))).linkTarget ?? '';
    await onHost(to, async () => {
      const there = await lstat(to).catch(() => undefined);
      if (there && !there.isDirectory()) await unlink(to);
      await symlink(target, to);
    });
    cx.tally.links++;
  } else cx.tally.skipped.push(`${cx.sandbox}:${e.path} (not a regular file, directory or symlink)`);
}

async function dirToHost(cx: CopyContext, e: EntryInfo, to: string): Promise<void> {
  const there = await lstat(to).catch(() => undefined);
  if (there && !there.isDirectory()) throw refuseDir(to, there.isSymbolicLink() ? 'symlink' : 'file', undefined);
  if (!there) await onHost(to, () => mkdir(to, { mode: 0o700 }));
  for (const child of await inGuest(cx, e.path, () => cx.files.list(e.path))) await entryToHost(cx, child, join(to, child.name));
  await onHost(to, () => chmod(to, e.mode)); // last: a read-only directory would refuse its own contents
}

/** Written under a temporary name beside the target and renamed when complete, so it appears whole or not at all. */
async function fileToHost(cx: CopyContext, e: EntryInfo, to: string): Promise<void> {
  const tmp = join(dirname(to), `.${basename(to).slice(0, 200)}.vmbox-${randomBytes(3).toString('hex')}`);
  cx.temps.add(tmp);
  try {
    const stream = await inGuest(cx, e.path, () => cx.files.read(e.path, { format: 'stream' }));
    let n = 0;
    const counted = Readable.fromWeb(stream as import('node:stream/web').ReadableStream<Uint8Array>).on('data', (c: Buffer) => {
      n += c.length;
    });
    await onHost(to, async () => {
      await pipeline(counted, createWriteStream(tmp, { mode: e.mode, flags: 'wx' }));
      await chmod(tmp, e.mode);
      await rename(tmp, to);
    });
    cx.tally.files++;
    cx.tally.bytes += n;
  } finally {
    cx.temps.delete(tmp);
    await unlink(tmp).catch(() => {});
  }
}

/** The guest entry at `path`, or undefined when there is none. */
async function guestInfo(cx: CopyContext, path: string): Promise<EntryInfo | undefined> {
  return inGuest(cx, path, () =>
    cx.files.getInfo(path).catch((err: VmboxError) => {
      if (err.code === 'notFound') return undefined;
      throw err;
    }),
  );
}

/** As docker cp: the destination's parent must exist, unless -p makes it. */
async function guestParent(cx: CopyContext, target: string): Promise<void> {
  const parent = posix.dirname(target);
  const info = await guestInfo(cx, parent);
  if (info?.type === 'dir') return;
  if (info) throw new VmboxError('notDirectory', `${cx.sandbox}:${parent}: not a directory`);
  if (!cx.parents) throw missingParent(`${cx.sandbox}:${parent}`, 'in the sandbox');
  await inGuest(cx, parent, () => cx.files.makeDir(parent));
}

async function hostParent(cx: CopyContext, target: string): Promise<void> {
  const parent = dirname(target);
  const st = await stat(parent).catch(() => undefined);
  if (st?.isDirectory()) return;
  if (st) throw new VmboxError('notDirectory', `${parent}: not a directory`);
  if (!cx.parents) throw missingParent(parent, 'on the host');
  await onHost(parent, () => mkdir(parent, { recursive: true }));
}

const missingParent = (where: string, side: string) =>
  new VmboxError('notFound', `${where}: no such directory ${side}: create it, or pass -p to make missing parents`);

/** Copying into a symlink would follow it out of the tree; into a file cannot work. */
function refuseDir(where: string, type: string, linkTarget: string | undefined): VmboxError {
  if (type === 'symlink') {
    return new VmboxError(
      'alreadyExists',
      `${where}: is a symlink${linkTarget ? ` to ${linkTarget}` : ''}; not copying a directory through it`,
    );
  }
  return new VmboxError('notDirectory', `${where}: exists and is not a directory`);
}

/** A guest step; its error names the guest path (the agent's usually does already). */
async function inGuest<T>(cx: CopyContext, path: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (!(err instanceof VmboxError)) throw err;
    if (err.message.includes(path)) throw err;
    throw new VmboxError(err.code, `${cx.sandbox}:${path}: ${err.message}`, { cause: err });
  }
}

const hostCodes: Record<string, ErrorCode> = {
  ENOENT: 'notFound',
  EACCES: 'permissionDenied',
  EPERM: 'permissionDenied',
  EROFS: 'permissionDenied',
  ENOSPC: 'noSpace',
  EISDIR: 'isDirectory',
  ENOTDIR: 'notDirectory',
  EEXIST: 'alreadyExists',
};

/** A host step; Node's errors become one line naming the host path. */
async function onHost<T>(path: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof VmboxError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (!e.code) throw err;
    // "ENOENT: no such file or directory, open '/x'" -> "no such file or directory"
    const reason = e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'( -> '.*')?$/, '');
    throw new VmboxError(hostCodes[e.code] ?? 'ioError', `${path}: ${reason} (on the host)`, { cause: err });
  }
}
