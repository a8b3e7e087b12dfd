import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { paths } from '../paths.js';
import { isAlive } from '../util/process.js';

export const OWNER_FILE = 'owner.pid';

/** Records which process owns a throw-away sandbox, so a later run can clean up after a kill -9. */
export function recordOwner(dir: string): void {
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
}

/**
 * Removes the directories of throw-away sandboxes whose owner died without
 * cleaning up (kill -9). Their QEMU died with the owner (parent-death signal).
 */
export function reapOrphans(): void {
  let ids: string[];
  try {
    ids = readdirSync(paths.sandboxes());
  } catch {
    return;
  }
  for (const id of ids) {
    const dir = paths.sandbox(id);
    let pid: number;
    try {
      pid = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue; // not a throw-away sandbox, or still being created
    }
    if (pid > 0 && !isAlive(pid)) rmSync(dir, { recursive: true, force: true });
  }
}
