import { Command, Option } from 'commander';
import { Volumes } from '../sdk/volumes.js';
import { connectOptions } from './client.js';
import { humanAge, humanBytes, table } from './format.js';
import { parsePairs, size } from './sandboxes.js';

/** `vmbox volume create|ls|inspect|rm|prune`: named volumes sandboxes mount (`-v NAME:/path`), through the SDK's Volumes. */
export function volumeCommand(): Command {
  const cmd = new Command('volume').description('named volumes: directories sandboxes mount with -v NAME:/path, kept when they go');
  cmd
    .command('create')
    .description('make a volume')
    .argument('<name>', 'its name')
    .option('-l, --label <KEY=VALUE>', 'label (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .addOption(
      new Option('--kind <kind>', 'directory: shared by many sandboxes at once; disk: an ext4 disk, one writer at a time')
        .choices(['directory', 'disk'])
        .default('directory'),
    )
    .option('--size <size>', "a disk volume's capacity, e.g. 4g (default 1g)", size)
    .option('--quota <size>', "a directory volume's write budget, e.g. 2g (past it, writes get ENOSPC)", size)
    .action(async (name: string, f: { label: string[]; kind: 'directory' | 'disk'; size?: number; quota?: number }) => {
      const v = await Volumes.create(
        {
          name,
          kind: f.kind,
          ...(f.size ? { sizeMib: f.size } : {}),
          ...(f.quota ? { quotaMib: f.quota } : {}),
          labels: parsePairs('--label', f.label),
        },
        connectOptions,
      );
      process.stdout.write(`${v.name}\n`);
    });
  cmd
    .command('ls')
    .description('list volumes')
    .option('--json', 'print JSON')
    .action(async (f: { json?: boolean }) => {
      const list = await Volumes.list(connectOptions);
      if (f.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      const rows = list.map((v) => [
        v.name,
        v.kind,
        humanBytes(v.sizeBytes),
        humanAge(new Date(v.createdAt).toISOString()),
        v.usedBy.join(',') || '-',
      ]);
      process.stdout.write(`${table(['NAME', 'KIND', 'SIZE', 'CREATED', 'MOUNTED BY'], rows)}\n`);
    });
  cmd
    .command('inspect')
    .description('a volume as JSON')
    .argument('<name>')
    .action(async (name: string) => {
      process.stdout.write(`${JSON.stringify(await Volumes.get(name, connectOptions), null, 2)}\n`);
    });
  cmd
    .command('rm')
    .description('remove volumes and their files (refused while a sandbox mounts one)')
    .argument('<name...>')
    .action(async (names: string[]) => {
      for (const name of names) {
        await Volumes.remove(name, connectOptions);
        process.stdout.write(`${name}\n`);
      }
    });
  cmd
    .command('prune')
    .description('remove every volume no sandbox mounts')
    .action(async () => {
      for (const name of await Volumes.prune(connectOptions)) process.stdout.write(`${name}\n`);
    });
  return cmd;
}
