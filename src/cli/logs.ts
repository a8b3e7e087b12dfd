import { Command } from 'commander';
import type { LogEntry, LogSource } from '../sdk/sandbox.js';
import { sandboxHandle } from './client.js';
import { parseDuration } from './format.js';

/** `vmbox logs NAME`: what the sandbox's commands printed, and with --source system, what vmbox did. */
export function logsCommand(): Command {
  return new Command('logs')
    .description('show a sandbox’s logs')
    .argument('<sandbox>', 'name or id')
    .option('-f, --follow', 'keep printing new entries')
    .option('--source <list>', 'comma-separated: stdout, stderr, output, system, network (default: the first three)')
    .option('--since <time>', 'only entries newer than this, e.g. 5m')
    .option('-n, --tail <n>', 'only the last n stored entries', Number)
    .option('-t, --timestamps', 'prefix each entry with its time')
    .action(async (ref: string, f: { follow?: boolean; source?: string; since?: string; tail?: number; timestamps?: boolean }) => {
      const sbx = await sandboxHandle(ref);
      const abort = new AbortController();
      process.once('SIGINT', () => abort.abort());
      try {
        const sources = f.source?.split(',').filter(Boolean) as LogSource[] | undefined;
        const sinceMs = f.since ? Date.now() - parseDuration(f.since) : undefined;
        for await (const e of sbx.logs({ sources, sinceMs, tail: f.tail, follow: f.follow, signal: abort.signal })) print(e, f.timestamps);
      } finally {
        sbx.close();
      }
    });
}

/** System and network entries are lines the host wrote (no newline of their own), always stamped; output is as printed. */
function print(e: LogEntry, timestamps?: boolean): void {
  const line = e.source === 'system' || e.source === 'network';
  const stamp = timestamps || line ? `${new Date(e.t).toISOString()} ` : '';
  if (line) process.stdout.write(`${stamp}[${e.source === 'system' ? 'vmbox' : 'network'}] ${e.text}\n`);
  else (e.source === 'stderr' ? process.stderr : process.stdout).write(stamp ? `${stamp}${e.text}` : e.text);
}
