import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import { GuestError, SpecError, VmboxError } from '../errors.js';
import type { AgentClient } from '../guest/client.js';
import type { Patch } from '../spec/sandbox.js';

/**
 * Applies the spec's patches through the agent, before any command runs.
 * Each refuses to replace an existing path unless `replace` is set.
 */
export async function applyPatches(agent: AgentClient, patches: Patch[]): Promise<void> {
  for (const [i, p] of patches.entries()) {
    try {
      await applyPatch(agent, p);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new SpecError(`patches.${i}`, `${p.op} ${p.path} failed: ${why}`);
    }
  }
}

async function exists(agent: AgentClient, path: string): Promise<boolean> {
  try {
    await agent.stat(path);
    return true;
  } catch (err) {
    if (err instanceof GuestError && err.code === 'notFound') return false;
    throw err;
  }
}

async function clear(agent: AgentClient, path: string, replace: boolean | undefined): Promise<void> {
  if (!(await exists(agent, path))) return;
  if (!replace) throw new VmboxError('alreadyExists', `${path} already exists in the image; set replace: true to overwrite it`);
  await agent.remove(path, { recursive: true });
}

async function applyPatch(agent: AgentClient, p: Patch): Promise<void> {
  switch (p.op) {
    case 'write': {
      if ((p.text === undefined) === (p.base64 === undefined))
        throw new VmboxError('invalidArgument', 'give exactly one of text or base64');
      await clear(agent, p.path, p.replace);
      const data = p.text !== undefined ? Buffer.from(p.text) : Buffer.from(p.base64 ?? '', 'base64');
      await agent.writeFile(p.path, data, { mode: p.mode ?? 0o644, mkdirs: true });
      return;
    }
    case 'append':
      await agent.writeFile(p.path, p.text, { append: true, mkdirs: true });
      return;
    case 'mkdir':
      await agent.mkdir(p.path, p.mode ?? 0o755);
      return;
    case 'remove':
      await agent.remove(p.path, { recursive: true });
      return;
    case 'symlink':
      await clear(agent, p.path, p.replace);
      await agent.mkdir(posix.dirname(p.path));
      await agent.symlink(p.target, p.path);
      return;
    case 'copy':
      await clear(agent, p.path, p.replace);
      await agent.mkdir(posix.dirname(p.path));
      await copyTree(agent, p.from, p.path);
      return;
  }
}

/** Copies a host file or directory tree into the guest, keeping modes and symlinks. */
async function copyTree(agent: AgentClient, from: string, to: string): Promise<void> {
  const st = lstatSync(from);
  if (st.isSymbolicLink()) await agent.symlink(readlinkSync(from), to);
  else if (st.isDirectory()) {
    await agent.mkdir(to, st.mode & 0o7777);
    for (const name of readdirSync(from)) await copyTree(agent, join(from, name), posix.join(to, name));
  } else if (st.isFile()) await agent.writeFile(to, readFileSync(from), { mode: st.mode & 0o7777 });
  else throw new VmboxError('invalidArgument', `${from} is neither a file, a directory nor a symlink`);
}
