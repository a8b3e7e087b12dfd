import { posix } from 'node:path';
import type { AgentClient, DirEntry, GuestWatch, OwnedBy } from '../guest/client.js';
import type { EntryInfo, WatchEvent } from '../spec/files.js';
import type { SandboxManager } from './manager.js';

/**
 * The guest file system of a running sandbox, through its agent. Content
 * moves as byte streams paced by the agent's credit: nothing holds a whole
 * file. Every call counts as activity on the sandbox. Calls run with the
 * agent's rights; given an `owner`, what they create belongs to that guest user.
 */
export class SandboxFiles {
  constructor(private readonly m: SandboxManager) {}

  private agent(ref: string): AgentClient {
    return this.m.running(ref).live.machine.agent;
  }

  read(ref: string, path: string): AsyncGenerator<Buffer, void, undefined> {
    return this.agent(ref).readFile(path);
  }

  async write(
    ref: string,
    path: string,
    content: AsyncIterable<Uint8Array> | Uint8Array | string,
    /**
     * `inPlace`: an existing file is truncated and written itself rather than replaced whole when done.
     * `metadata`: the file's user metadata (user.e2b.* attributes) becomes exactly this.
     */
    opts: { mode?: number; append?: boolean; makeParents?: boolean; inPlace?: boolean; metadata?: Record<string, string> } & OwnedBy = {},
  ): Promise<{ path: string; name: string; size: number }> {
    const { makeParents, ...rest } = opts;
    const { size } = await this.agent(ref).writeFile(path, content, { ...rest, mkdirs: makeParents ?? true });
    return { path, name: posix.basename(path), size };
  }

  async stat(ref: string, path: string): Promise<EntryInfo> {
    return entry(path, await this.agent(ref).stat(path));
  }

  /** Lists `path`, descending into directories (not symlinks) `depth - 1` more levels. */
  list(ref: string, path: string, depth = 1): Promise<EntryInfo[]> {
    return listTree(this.agent(ref), path, depth);
  }

  /** Makes a directory and its parents; `created` is false when it existed. */
  async makeDir(ref: string, path: string, mode?: number, as: OwnedBy = {}): Promise<{ created: boolean }> {
    const agent = this.agent(ref);
    const existed = await agent.stat(path).then(
      (st) => st.type === 'dir',
      () => false,
    );
    await agent.mkdir(path, mode, as);
    return { created: !existed };
  }

  /** Makes a symbolic link at `path` pointing to `target` (which need not exist). */
  async symlink(ref: string, target: string, path: string, as: OwnedBy = {}): Promise<EntryInfo> {
    const agent = this.agent(ref);
    await agent.symlink(target, path, as);
    return entry(path, await agent.stat(path));
  }

  async rename(ref: string, from: string, to: string): Promise<EntryInfo> {
    const agent = this.agent(ref);
    await agent.rename(from, to);
    return entry(to, await agent.stat(to));
  }

  remove(ref: string, path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    return this.agent(ref).remove(path, { recursive: opts.recursive ?? true });
  }

  watch(ref: string, path: string, opts: { recursive?: boolean }, onEvents: (events: WatchEvent[]) => void): GuestWatch {
    return this.agent(ref).watch(path, opts, (events) => {
      this.m.touch(ref);
      onEvents(events);
    });
  }
}

function entry(path: string, st: Omit<EntryInfo, 'name' | 'path'>): EntryInfo {
  return { ...st, name: posix.basename(path), path };
}

async function listTree(agent: AgentClient, path: string, depth: number): Promise<EntryInfo[]> {
  const entries: DirEntry[] = await agent.list(path);
  const out: EntryInfo[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = posix.join(path, e.name);
    out.push({ ...e, path: full });
    if (depth > 1 && e.type === 'dir') out.push(...(await listTree(agent, full, depth - 1)));
  }
  return out;
}
