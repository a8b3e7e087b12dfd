import { Command } from 'commander';
import { sandboxPath } from '../sdk/paths.js';
import type { SandboxInfo } from '../sdk/sandbox.js';
import { type SnapshotInfo, Snapshots, Templates } from '../sdk/snapshots.js';
import { connectOptions, openConnection } from './client.js';
import { humanAge, humanBytes, humanDuration, table } from './format.js';
import { int, parsePairs } from './sandboxes.js';

const collect = (v: string, acc: string[]) => [...acc, v];
const ago = (ms: number) => humanAge(new Date(ms).toISOString());

/** `vmbox snapshot create|ls|inspect|rm`. */
export function snapshotCommand(): Command {
  const snap = new Command('snapshot').description('snapshots of sandboxes: memory, processes and disk at one instant');
  snap
    .command('create')
    .description('snapshot a sandbox (running: memory, devices and disk, and it keeps running; stopped: its disk)')
    .argument('<sandbox>', 'name or id')
    .option('--name <name>', 'snapshot name (default: the sandbox’s and a suffix)')
    .option('-l, --label <KEY=VALUE>', 'label (repeatable)', collect, [])
    .option('--force', 'replace a snapshot of that name')
    .option('--integrity', 'record sha256 of each file; every restore checks them')
    .action(async (ref: string, f: { name?: string; label: string[]; force?: boolean; integrity?: boolean }) => {
      const conn = await openConnection();
      try {
        const s = await conn.request<SnapshotInfo & { timing: { pausedMs: number; totalMs: number } }>(
          'POST',
          sandboxPath(ref, '/snapshots'),
          { name: f.name, labels: parsePairs('--label', f.label), force: f.force, integrity: f.integrity },
        );
        process.stdout.write(`${s.name}\n`);
        process.stderr.write(
          `${s.kind} snapshot, ${humanBytes(s.sizeBytes)}, in ${s.timing.totalMs} ms${s.kind === 'memory' ? ` (the sandbox paused ${s.timing.pausedMs} ms)` : ''}\n`,
        );
      } finally {
        conn.close();
      }
    });
  snap
    .command('ls')
    .description('list snapshots')
    .option('--json', 'print JSON')
    .action(async (f: { json?: boolean }) => {
      const list = await Snapshots.list(connectOptions);
      if (f.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      const rows = list.map((s) => [
        s.name,
        s.id.slice(0, 12),
        s.kind,
        s.source?.name ?? '-',
        s.image,
        humanBytes(s.sizeBytes),
        ago(s.createdAt),
        s.usedBy.length ? String(s.usedBy.length) : '-',
      ]);
      process.stdout.write(`${table(['NAME', 'ID', 'KIND', 'FROM', 'IMAGE', 'SIZE', 'CREATED', 'USED BY'], rows)}\n`);
    });
  snap
    .command('inspect')
    .description('show a snapshot as JSON')
    .argument('<snapshot>', 'name or id')
    .action(async (ref: string) => {
      process.stdout.write(`${JSON.stringify(await Snapshots.get(ref, connectOptions), null, 2)}\n`);
    });
  snap
    .command('export')
    .description('write a snapshot as one tar (its memory and a standalone disk), for import on another vmbox')
    .argument('<snapshot>', 'name or id')
    .requiredOption('-o, --output <file>', 'the tar to write')
    .action(async (ref: string, f: { output: string }) => {
      await Snapshots.export(ref, f.output, connectOptions);
      process.stdout.write(`${f.output}\n`);
    });
  snap
    .command('import')
    .description('add a snapshot an export wrote')
    .argument('<file>')
    .option('--name <name>', 'name it this instead of the archive’s name')
    .action(async (file: string, f: { name?: string }) => {
      const s = await Snapshots.import(file, { name: f.name, ...connectOptions });
      process.stdout.write(`${s.name}\n`);
    });
  snap
    .command('rm')
    .description('remove snapshots (refused while a sandbox or snapshot is layered on one)')
    .argument('<snapshot...>', 'names or ids')
    .action(async (refs: string[]) => {
      for (const ref of refs) {
        await Snapshots.remove(ref, connectOptions);
        process.stdout.write(`${ref}\n`);
      }
    });
  return snap;
}

/** `vmbox fork NAME --count N`: running copies of a running sandbox, which carries on. */
export function forkCommand(): Command {
  return new Command('fork')
    .description('make running copies of a running sandbox (it carries on as it was)')
    .argument('<sandbox>', 'name or id')
    .option('-n, --count <n>', 'how many copies', int('--count'), 1)
    .option('--name <name>', 'name of a copy (repeatable; default: derived from the id)', collect, [])
    .option('-l, --label <KEY=VALUE>', 'label of the copies (repeatable)', collect, [])
    .option('--share-memory', 'make the copies from a memory file they share (memory held once; the default from 4 copies)')
    .option('--no-share-memory', 'each copy loads the whole state (quickest for a few copies)')
    .action(async (ref: string, f: { count: number; name: string[]; label: string[]; shareMemory?: boolean }) => {
      const conn = await openConnection();
      try {
        const started = Date.now();
        const labels = parsePairs('--label', f.label);
        const copies = await conn.request<SandboxInfo[]>('POST', sandboxPath(ref, '/fork'), {
          ...(f.name.length ? { names: f.name } : { count: f.count }),
          ...(Object.keys(labels).length ? { labels } : {}),
          ...(f.shareMemory !== undefined ? { shareMemory: f.shareMemory } : {}),
        });
        for (const c of copies) process.stdout.write(`${c.name}\n`);
        process.stderr.write(`${copies.length} cop${copies.length > 1 ? 'ies' : 'y'} in ${humanDuration(Date.now() - started)}\n`);
      } finally {
        conn.close();
      }
    });
}

/** `vmbox template warm|ls|rm`: the images booted once and saved, which creates restore instead of booting. */
export function templateCommand(): Command {
  const tpl = new Command('template').description('warm-start templates (made by the first create of an image, or ahead of time)');
  tpl
    .command('warm')
    .description('make the template of an image and shape now, so the next create starts warm')
    .argument('[image]', 'image', 'base')
    .option('--cpus <n>', 'virtual CPUs', int('--cpus'))
    .option('--memory <mib>', 'memory in MiB', int('--memory'))
    .action(async (image: string, f: { cpus?: number; memory?: number }) => {
      const t = await Templates.warm(image, { cpus: f.cpus, memoryMib: f.memory, ...connectOptions });
      process.stdout.write(`${t.key}\n`);
    });
  tpl
    .command('ls')
    .description('list templates')
    .option('--json', 'print JSON')
    .action(async (f: { json?: boolean }) => {
      const list = await Templates.list(connectOptions);
      if (f.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      const rows = list.map((t) => [
        t.key,
        t.image,
        String(t.cpus),
        `${t.memoryMib} MiB`,
        humanBytes(t.sizeBytes),
        ago(t.createdAt),
        String(t.usedBy.length),
      ]);
      process.stdout.write(`${table(['KEY', 'IMAGE', 'CPUS', 'MEMORY', 'SIZE', 'CREATED', 'IN USE'], rows)}\n`);
    });
  tpl
    .command('rm')
    .description('remove templates (refused while a sandbox or snapshot is layered on one)')
    .argument('<key...>')
    .action(async (keys: string[]) => {
      for (const key of keys) {
        await Templates.remove(key, connectOptions);
        process.stdout.write(`${key}\n`);
      }
    });
  return tpl;
}
