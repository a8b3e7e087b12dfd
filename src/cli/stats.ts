import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import type { MetricsSample } from '../sdk/sandbox.js';
import { Sandbox } from '../sdk/sandbox.js';
import { connectOptions } from './client.js';
import { humanBytes, table } from './format.js';

/** `vmbox stats`: CPU, memory, disk and processes of running sandboxes. */
export function statsCommand(): Command {
  return new Command('stats')
    .description('show resource use of running sandboxes')
    .argument('[sandbox...]', 'names or ids (default: all running)')
    .option('--watch', 'refresh every second until Ctrl-C')
    .option('--json', 'print JSON')
    .action(async (refs: string[], f: { watch?: boolean; json?: boolean }) => {
      const names = refs.length ? refs : (await Sandbox.list({ ...connectOptions, query: { state: ['running'] } })).map((s) => s.name);
      const handles = await Promise.all(names.map((n) => Sandbox.connect(n, connectOptions)));
      try {
        for (;;) {
          const samples = await Promise.all(handles.map(async (h) => ({ name: h.name, ...(await h.getMetrics()).latest })));
          if (f.json) process.stdout.write(`${JSON.stringify(samples, null, 2)}\n`);
          else {
            if (f.watch) process.stdout.write('\x1b[2J\x1b[H');
            process.stdout.write(`${render(samples)}\n`);
          }
          if (!f.watch) return;
          await sleep(1000);
        }
      } finally {
        for (const h of handles) h.close();
      }
    });
}

function render(samples: (MetricsSample & { name: string })[]): string {
  const pct = (a: number, b: number) => (b ? `${((a / b) * 100).toFixed(0)}%` : '-');
  return table(
    ['NAME', 'CPU %', 'MEMORY', 'MEM %', 'DISK', 'PROCS', 'HOST RSS'],
    samples.map((s) => [
      s.name,
      s.cpuPercent.toFixed(1),
      `${humanBytes(s.memUsedBytes)} / ${humanBytes(s.memTotalBytes)}`,
      pct(s.memUsedBytes, s.memTotalBytes),
      `${humanBytes(s.diskUsedBytes)} / ${humanBytes(s.diskTotalBytes)}`,
      String(s.processes),
      humanBytes(s.hostRssBytes),
    ]),
  );
}
