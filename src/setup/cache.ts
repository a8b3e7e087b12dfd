import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { withFileLock } from '../util/file-lock.js';

/** A short content hash over strings and files: the key of a cached build. */
export function inputsKey(parts: Array<{ file: string } | { text: string } | { fileStat: string }>): string {
  const h = createHash('sha256');
  for (const p of parts) {
    if ('file' in p) h.update(readFileSync(p.file));
    else if ('text' in p) h.update(p.text);
    else {
      // Large inputs (the kernel source tarball) are keyed by size and mtime, not read.
      const st = statSync(p.fileStat);
      h.update(`${p.fileStat}:${st.size}:${st.mtimeMs}`);
    }
    h.update('\0');
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * Builds into `<dir>.tmp-<pid>` and renames into place, so a crash mid-build
 * never leaves something that looks finished. One build at a time across
 * processes (a lock beside `dir`): two first commands at once wait for one
 * kernel build, rather than running two on the same cores. Returns `dir`.
 */
export async function buildOnce(dir: string, marker: string, build: (tmp: string) => Promise<void>): Promise<string> {
  if (existsSync(`${dir}/${marker}`)) return dir;
  mkdirSync(dirname(dir), { recursive: true });
  return withFileLock(`${dir}.lock`, async () => {
    if (existsSync(`${dir}/${marker}`)) return dir; // built by the holder we waited for
    await buildInto(dir, build);
    return dir;
  });
}

async function buildInto(dir: string, build: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    await build(tmp);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
