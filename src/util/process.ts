import { readFileSync } from 'node:fs';

/**
 * Whether a process exists and has not exited (EPERM: it exists, owned by
 * someone else). A zombie counts as dead: an orphan whose parent (often a
 * container's init) never reaps it still answers kill(pid, 0).
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (not Linux): trust kill(0)
  }
}
