import { Command } from 'commander';
import type { ApiKeyCreated, ApiKeyInfo } from '../spec/api-keys.js';
import { openConnection } from './client.js';
import { humanAge, table } from './format.js';

const ago = (ms: number | null) => (ms === null ? '-' : humanAge(new Date(ms).toISOString()));

/** `vmbox api-key create|ls|rm`: keys for E2B's API (its SDKs send them as E2B_API_KEY). */
export function apiKeyCommand(): Command {
  const cmd = new Command('api-key').description("API keys for E2B's API (E2B's SDKs with E2B_API_URL pointed at this server)");
  cmd
    .command('create')
    .description('make a key; it is printed once (only its hash is kept)')
    .option('--name <name>', 'a name to find it by (default: derived from its id)')
    .option('--admin', 'it sees every sandbox, not only those it made')
    .action(async (f: { name?: string; admin?: boolean }) => {
      const conn = await openConnection();
      try {
        const k = await conn.request<ApiKeyCreated>('POST', '/v1/api-keys', { name: f.name, admin: f.admin });
        process.stdout.write(`${k.key}\n`);
      } finally {
        conn.close();
      }
    });
  cmd
    .command('ls')
    .description('list keys (never the keys themselves)')
    .option('--json', 'print JSON')
    .action(async (f: { json?: boolean }) => {
      const conn = await openConnection();
      try {
        const list = await conn.request<ApiKeyInfo[]>('GET', '/v1/api-keys');
        if (f.json) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        const rows = list.map((k) => [k.name, k.id, k.admin ? 'admin' : '-', ago(k.createdAt), ago(k.lastUsedAt)]);
        process.stdout.write(`${table(['NAME', 'ID', 'ADMIN', 'CREATED', 'LAST USED'], rows)}\n`);
      } finally {
        conn.close();
      }
    });
  cmd
    .command('rm')
    .description('remove keys (their sandboxes stay)')
    .argument('<key...>', 'names or ids')
    .action(async (refs: string[]) => {
      const conn = await openConnection();
      try {
        for (const ref of refs) {
          await conn.request('DELETE', `/v1/api-keys/${encodeURIComponent(ref)}`);
          process.stdout.write(`${ref}\n`);
        }
      } finally {
        conn.close();
      }
    });
  return cmd;
}
