import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A directory's entries, or none when it does not exist (yet). */
export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Host disk the files directly in `dir` take (a sparse file counts what it holds). */
export function diskUse(dir: string): number {
  let n = 0;
  for (const f of listDir(dir)) {
    try {
      n += statSync(join(dir, f)).blocks * 512;
    } catch {}
  }
  return n;
}
