import { closeSync, openSync, readSync, statSync } from 'node:fs';

/** The last non-empty `lines` lines of a log file (read from its last 16 KiB), or '' when it cannot be read. */
export function tailLines(path: string, lines: number): string {
  try {
    const size = statSync(path).size;
    const len = Math.min(size, 16384);
    const buf = Buffer.alloc(len);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, len, size - len);
    } finally {
      closeSync(fd);
    }
    return buf
      .toString('utf8')
      .replace(/\r/g, '')
      .split('\n')
      .filter((l) => l.trim())
      .slice(-lines)
      .join('\n');
  } catch {
    return '';
  }
}
