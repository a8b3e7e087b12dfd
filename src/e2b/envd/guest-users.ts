import { posix } from 'node:path';
import type { SandboxManager } from '../../runtime/manager.js';

export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** The guest's users and groups, as its /etc/passwd and /etc/group say. */
export interface GuestAccounts {
  users: Map<string, GuestUser>;
  userNames: Map<number, string>;
  groupNames: Map<number, string>;
}

/** How long a reading of a guest's accounts is used before it is read again (a command may add users). */
const FRESH_MS = 5_000;

/**
 * E2B names owners and groups, and resolves relative paths against the
 * caller's home: both need the guest's account files, read (as root) through
 * the agent and kept for a few seconds per sandbox.
 */
export class GuestUsers {
  private readonly cache = new Map<string, { at: number; accounts: Promise<GuestAccounts> }>();

  constructor(private readonly m: SandboxManager) {}

  accounts(sandboxId: string): Promise<GuestAccounts> {
    const hit = this.cache.get(sandboxId);
    if (hit && Date.now() - hit.at < FRESH_MS) return hit.accounts;
    const accounts = this.read(sandboxId);
    this.cache.set(sandboxId, { at: Date.now(), accounts });
    accounts.catch(() => this.cache.delete(sandboxId));
    // Entries of sandboxes long gone are dropped as others are read.
    for (const [id, e] of this.cache) if (Date.now() - e.at > 60_000) this.cache.delete(id);
    return accounts;
  }

  /** The home of `user` (a name or uid); `/` for one the guest does not know, as the agent runs it. */
  async home(sandboxId: string, user: string): Promise<string> {
    const { users, userNames } = await this.accounts(sandboxId);
    const byName = users.get(user) ?? users.get(userNames.get(Number(user)) ?? '');
    return byName?.home ?? (user === 'root' || user === '0' ? '/root' : '/');
  }

  private async read(sandboxId: string): Promise<GuestAccounts> {
    const [passwd, group] = await Promise.all([this.text(sandboxId, '/etc/passwd'), this.text(sandboxId, '/etc/group')]);
    const users = new Map<string, GuestUser>();
    const userNames = new Map<number, string>();
    for (const f of fields(passwd)) {
      const [name = '', , uid = '', gid = '', , home = '/'] = f;
      const u = { name, uid: Number(uid), gid: Number(gid), home: home || '/' };
      users.set(name, u);
      if (!userNames.has(u.uid)) userNames.set(u.uid, name);
    }
    const groupNames = new Map<number, string>();
    for (const [name = '', , gid = ''] of fields(group)) if (!groupNames.has(Number(gid))) groupNames.set(Number(gid), name);
    return { users, userNames, groupNames };
  }

  private async text(sandboxId: string, path: string): Promise<string> {
    const chunks: Buffer[] = [];
    try {
      for await (const c of this.m.files.read(sandboxId, path)) chunks.push(c);
    } catch {
      return ''; // an image without the file: numbers stay numbers
    }
    return Buffer.concat(chunks).toString();
  }
}

function fields(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

/** E2B's paths: `~` and relative ones are the caller's home; the result is absolute and normal. */
export function resolvePath(path: string, home: string): string {
  if (path === '~' || path === '') return home;
  if (path.startsWith('~/')) return posix.join(home, path.slice(2));
  return posix.resolve(home, path);
}
