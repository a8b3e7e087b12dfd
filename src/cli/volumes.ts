import { Command, Option } from 'commander';
import type { VolumeInfo } from '../spec/volumes.js';
import { openConnection } from './client.js';
import { humanAge, humanBytes, table } from './format.js';
import { parsePairs, size } from './sandboxes.js';

/** `vmbox volume create|ls|inspect|rm|prune`: named directories sandboxes mount (`-v NAME:/path`). */
export function volumeCommand(): Command {
  const cmd = new Command('volume').description('named volumes: directories sandboxes mount with -v NAME:/path, kept when they go');
  const withConn = async <T>(fn: (conn: Awaited<ReturnType<typeof openConnection>>) => Promise<T>) => {
    const conn = await openConnection();
    try {
      return await fn(conn);
    } finally {
      conn.close();
    }
  };
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
    .action((name: string, f: { label: string[]; kind: 'directory' | 'disk'; size?: number; quota?: number }) =>
      withConn(async (conn) => {
        const v = await conn.request<VolumeInfo>('POST', '/v1/volumes', {
          name,
          kind: f.kind,
          ...(f.size ? { sizeMib: f.size } : {}),
          ...(f.quota ? { quotaMib: f.quota } : {}),
          labels: parsePairs('--label', f.label),
        });
        process.stdout.write(`${v.name}\n`);
      }),
    );
  cmd
    .command('ls')
    .description('list volumes')
    .option('--json', 'print JSON')
    .action((f: { json?: boolean }) =>
      withConn(async (conn) => {
        const list = await conn.request<VolumeInfo[]>('GET', '/v1/volumes');
        if (f.json) return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        const rows = list.map((v) => [
          v.name,
          v.kind,
          humanBytes(v.sizeBytes),
          humanAge(new Date(v.createdAt).toISOString()),
          v.usedBy.join(',') || '-',
        ]);
        process.stdout.write(`${table(['NAME', 'KIND', 'SIZE', 'CREATED', 'MOUNTED BY'], rows)}\n`);
      }),
    );
  cmd
    .command('inspect')
    .description('a volume as JSON')
    .argument('<name>')
    .action((name: string) =>
      withConn(async (conn) => {
        process.stdout.write(`${JSON.stringify(await conn.request('GET', `/v1/volumes/${encodeURIComponent(name)}`), null, 2)}\n`);
      }),
    );
  cmd
    .command('rm')
    .description('remove volumes and their files (refused while a sandbox mounts one)')
    .argument('<name...>')
    .action((names: string[]) =>
      withConn(async (conn) => {
        for (const name of names) {
          await conn.request('DELETE', `/v1/volumes/${encodeURIComponent(name)}`);
          process.stdout.write(`${name}\n`);
        }
      }),
    );
  cmd
    .command('prune')
    .description('remove every volume no sandbox mounts')
    .action(() =>
      withConn(async (conn) => {
        const { removed } = await conn.request<{ removed: string[] }>('POST', '/v1/volumes/prune', {});
        for (const name of removed) process.stdout.write(`${name}\n`);
      }),
    );
  return cmd;
}
