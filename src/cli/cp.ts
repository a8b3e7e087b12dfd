import { unlinkSync } from 'node:fs';
import { Command } from 'commander';
import { VmboxError } from '../errors.js';
import type { Sandbox } from '../sdk/sandbox.js';
import { sandboxHandle } from './client.js';
import { type CopyContext, toGuest, toHost } from './cp-tree.js';
import { humanBytes } from './format.js';
import { exitForSignal } from './stream.js';

/** `NAME:/path` names a guest path; anything else is a host path. */
export function parseTarget(arg: string): { sandbox?: string; path: string } {
  const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*):(.*)$/.exec(arg);
  if (!m) return { path: arg };
  const path = m[2] || '/';
  if (!path.startsWith('/')) throw new VmboxError('invalidArgument', `${arg}: the guest path must be absolute, e.g. ${m[1]}:/work`);
  return { sandbox: m[1], path };
}

interface CpFlags {
  parents?: boolean;
  followLink?: boolean;
}

/** `vmbox cp SRC DEST`: files, directories and symlinks between the host and a sandbox, modes kept. */
export function cpCommand(): Command {
  return new Command('cp')
    .description(
      'copy files or directories between the host and a sandbox, keeping modes; symlinks are copied as symlinks (NAME:/path is in the sandbox)',
    )
    .argument('<src>', 'host path, or NAME:/path')
    .argument('<dest>', 'host path, or NAME:/path')
    .option('-p, --parents', 'make the destination’s missing parent directories (default: refuse)')
    .option('-L, --follow-link', 'when SRC itself is a symlink, copy what it points to')
    .addHelpText(
      'after',
      '\nExamples:\n  vmbox cp ./dir dev:/work     # into /work/dir if /work is a directory\n  vmbox cp dev:/etc/hosts .\n  vmbox cp -p app.py dev:/srv/new/app.py',
    )
    .action(async (srcArg: string, destArg: string, f: CpFlags) => {
      const src = parseTarget(srcArg);
      const dest = parseTarget(destArg);
      if (!!src.sandbox === !!dest.sandbox) {
        throw new VmboxError('invalidArgument', 'give exactly one side as NAME:/path (a sandbox) and the other as a host path');
      }
      const name = (src.sandbox ?? dest.sandbox) as string;
      const sbx = (await sandboxHandle(name)) as Sandbox;
      const tally = { files: 0, links: 0, bytes: 0, skipped: [] as string[] };
      const cx: CopyContext = { files: sbx.files, sandbox: name, parents: f.parents ?? false, temps: new Set(), tally };
      const stop = removeTempsOnSignal(cx.temps);
      try {
        if (dest.sandbox) await toGuest(cx, src.path, dest.path, f.followLink ?? false);
        else await toHost(cx, src.path, dest.path, f.followLink ?? false);
      } finally {
        stop();
        sbx.close();
      }
      for (const s of tally.skipped) process.stderr.write(`vmbox: skipped ${s}\n`);
      const links = tally.links ? ` and ${tally.links} symlink${tally.links === 1 ? '' : 's'}` : '';
      process.stderr.write(`copied ${tally.files} file${tally.files === 1 ? '' : 's'}${links}, ${humanBytes(tally.bytes)}\n`);
    });
}

/**
 * Ctrl-C mid-copy: the host file being written is still under its temporary
 * name, so remove it before going. (A guest file is dropped by the agent when
 * the connection closes.)
 */
function removeTempsOnSignal(temps: Set<string>): () => void {
  const onSignal = (sig: NodeJS.Signals) => {
    for (const t of temps) {
      try {
        unlinkSync(t);
      } catch {}
    }
    process.exit(exitForSignal(sig));
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
  };
}
