import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readlink, stat, symlink } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import type { Files } from '../sdk/files.js';
import type { Sandbox } from '../sdk/sandbox.js';
import { sandboxHandle } from './client.js';
import { humanBytes } from './format.js';

interface Tally {
  files: number;
  bytes: number;
  skipped: string[];
}

/** `NAME:/path` names a guest path; anything else is a host path. */
export function parseTarget(arg: string): { sandbox?: string; path: string } {
  const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*):(.*)$/.exec(arg);
  if (!m) return { path: arg };
  const path = m[2] || '/';
  if (!path.startsWith('/')) throw new Error(`${arg}: the guest path must be absolute, e.g. ${m[1]}:/work`);
  return { sandbox: m[1], path };
}

/** `vmbox cp SRC DEST`: files and directories between the host and a sandbox, modes kept. */
export function cpCommand(): Command {
  return new Command('cp')
    .description('copy files or directories between the host and a sandbox, keeping modes (NAME:/path is in the sandbox)')
    .argument('<src>', 'host path, or NAME:/path')
    .argument('<dest>', 'host path, or NAME:/path')
    .addHelpText(
      'after',
      '\nExamples:\n  vmbox cp ./dir dev:/work     # into /work/dir if /work is a directory\n  vmbox cp dev:/etc/hosts .',
    )
    .action(async (srcArg: string, destArg: string) => {
      const src = parseTarget(srcArg);
      const dest = parseTarget(destArg);
      if (!!src.sandbox === !!dest.sandbox) throw new Error('give exactly one side as NAME:/path (a sandbox) and the other as a host path');
      const sbx = (await sandboxHandle((src.sandbox ?? dest.sandbox) as string)) as Sandbox;
      const tally: Tally = { files: 0, bytes: 0, skipped: [] };
      try {
        if (dest.sandbox) await toGuest(sbx.files, src.path, dest.path, tally);
        else await toHost(sbx.files, src.path, dest.path, tally);
      } finally {
        sbx.close();
      }
      for (const s of tally.skipped) process.stderr.write(`vmbox: skipped ${s}\n`);
      process.stderr.write(`copied ${tally.files} file${tally.files === 1 ? '' : 's'}, ${humanBytes(tally.bytes)}\n`);
    });
}

async function toGuest(files: Files, src: string, dest: string, tally: Tally): Promise<void> {
  const st = await stat(src).catch(() => {
    throw new Error(`${src}: no such file or directory on the host`);
  });
  const into = await files.getInfo(dest).then(
    (i) => i.type === 'dir',
    () => false,
  );
  const target = into ? posix.join(dest, basename(src)) : dest;
  if (st.isDirectory()) await dirToGuest(files, src, target, st.mode & 0o7777, tally);
  else await fileToGuest(files, src, target, st.mode & 0o7777, st.size, tally);
}

async function dirToGuest(files: Files, src: string, target: string, mode: number, tally: Tally): Promise<void> {
  await files.makeDir(target, { mode });
  for (const e of await readdir(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = posix.join(target, e.name);
    const st = await lstat(from);
    if (e.isDirectory()) await dirToGuest(files, from, to, st.mode & 0o7777, tally);
    else if (e.isFile()) await fileToGuest(files, from, to, st.mode & 0o7777, st.size, tally);
    else tally.skipped.push(`${from} (${e.isSymbolicLink() ? `symlink to ${await readlink(from)}` : 'not a regular file'})`);
  }
}

async function fileToGuest(files: Files, src: string, target: string, mode: number, size: number, tally: Tally): Promise<void> {
  await files.write(target, createReadStream(src), { mode });
  tally.files++;
  tally.bytes += size;
}

async function toHost(files: Files, src: string, dest: string, tally: Tally): Promise<void> {
  const info = await files.getInfo(src);
  const into = await stat(dest).then(
    (s) => s.isDirectory(),
    () => false,
  );
  const target = into ? join(dest, posix.basename(src)) : dest;
  if (info.type === 'dir') await dirToHost(files, src, target, info.mode, tally);
  else await fileToHost(files, src, target, info.mode, tally);
}

async function dirToHost(files: Files, src: string, target: string, mode: number, tally: Tally): Promise<void> {
  await mkdir(target, { recursive: true });
  for (const e of await files.list(src)) {
    const to = join(target, e.name);
    if (e.type === 'dir') await dirToHost(files, e.path, to, e.mode, tally);
    else if (e.type === 'file') await fileToHost(files, e.path, to, e.mode, tally);
    else if (e.type === 'symlink' && e.linkTarget)
      await symlink(e.linkTarget, to).catch(() => tally.skipped.push(`${e.path} (${to} exists)`));
    else tally.skipped.push(`${e.path} (not a regular file)`);
  }
  await chmod(target, mode); // last: a read-only directory would refuse its own contents
}

async function fileToHost(files: Files, src: string, target: string, mode: number, tally: Tally): Promise<void> {
  const stream = await files.read(src, { format: 'stream' });
  const out = createWriteStream(target, { mode });
  let n = 0;
  const counted = Readable.fromWeb(stream as import('node:stream/web').ReadableStream<Uint8Array>).on('data', (c: Buffer) => {
    n += c.length;
  });
  await pipeline(counted, out);
  await chmod(target, mode);
  tally.files++;
  tally.bytes += n;
}
