/**
 * `npm run bench`: vmbox's own numbers, measured side by side in one run.
 * Medians of repeated runs; JSON under bench/results/, a table on stdout.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureAll } from '../src/setup/assets.js';
import { timeBareBoot } from '../src/vmm/accel.js';
import { processMetrics } from '../src/vmm/qemu/provider.js';
import { testRuntime } from '../test/fixtures/runtime.js';
import { e2bBench } from './e2b.js';
import { fuzzBench } from './fuzz.js';
import { imageBench } from './images.js';
import { mountBench } from './mounts.js';
import { networkBench } from './network.js';
import { serverBench } from './server.js';
import { snapshotBench } from './snapshots.js';
import { soakBench } from './soak.js';
import { median, percentile, printTable, type Row } from './stats.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS || 10);
/** The snapshot, fork and warm start targets are of 20 runs each. */
const SNAPSHOT_RUNS = Number(process.env.BENCH_RUNS || 20);
const MIB = 1024 * 1024;

function timeCommand(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${cmd} exited ${code}`))));
  });
}

async function coldStart(assets: Awaited<ReturnType<typeof ensureAll>>): Promise<Row[]> {
  const bare: number[] = [];
  const vmbox: number[] = [];
  const probe = { kernelPath: assets.kernelPath, bareInitrd: assets.bareInitrd };
  // Interleaved, so both see the same machine state.
  for (let i = 0; i < RUNS; i++) {
    const b = await timeBareBoot(assets.accel.accel, probe, 30_000, 512);
    if (b === undefined) throw new Error('the bare boot failed');
    bare.push(b);
    vmbox.push(await timeCommand(join(root, 'vmbox'), ['run', '--', 'true']));
  }
  const ratio = median(vmbox) / median(bare);
  return [
    { metric: 'bare QEMU boot (same kernel, trivial init)', value: median(bare), unit: 'ms', note: `${RUNS} runs` },
    {
      metric: 'cold start: vmbox run -- true',
      value: median(vmbox),
      unit: 'ms',
      note: `${RUNS} runs, p90 ${percentile(vmbox, 90).toFixed(0)} ms`,
    },
    { metric: 'cold start / bare boot', value: ratio, unit: 'x', target: '<= 1.25' },
  ];
}

/** MiB/s of a 64 MiB operation, one sample per run. */
async function throughput(op: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await op();
    out.push(64 / ((performance.now() - t) / 1000));
  }
  return out;
}

async function onRunningVm(): Promise<Row[]> {
  // The runtime as the server drives it, over a home of its own.
  const rt = await testRuntime();
  try {
    const sbx = await rt.create({ memoryMib: 512 });
    const { vm, agent } = sbx.machine();
    await new Promise((r) => setTimeout(r, 2000));
    const rss = processMetrics(vm.pid).rssBytes / MIB;

    const ping: number[] = [];
    const exec: number[] = [];
    for (let i = 0; i < 20; i++) await sbx.exec(['true']).exit; // warm-up
    for (let i = 0; i < 200; i++) {
      let t = performance.now();
      await agent.ping();
      ping.push(performance.now() - t);
      t = performance.now();
      await sbx.exec(['true']).exit;
      exec.push(performance.now() - t);
    }

    // The guest's own floor for starting a process: a shell loop of /bin/true, timed from the host.
    const spawnFloor: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      await sbx.run(['sh', '-c', 'i=0; while [ $i -lt 50 ]; do /bin/true; i=$((i+1)); done']);
      spawnFloor.push((performance.now() - t) / 50);
    }

    const data = randomBytes(64 * MIB);
    const write = await throughput(() => agent.writeFile('/tmp/bench.bin', data));
    const writeShm = await throughput(() => agent.writeFile('/dev/shm/bench.bin', data));
    const read = await throughput(async () => {
      let n = 0;
      for await (const chunk of agent.readFile('/tmp/bench.bin')) n += chunk.length;
      if (n !== data.length) throw new Error(`read ${n} bytes, expected ${data.length}`);
    });
    // The same amount written and read by dd inside the guest: what the guest alone manages.
    const ddWrite = await throughput(() => sbx.run(['dd', 'if=/dev/zero', 'of=/tmp/dd.bin', 'bs=1M', 'count=64']));
    const ddRead = await throughput(() => sbx.run(['dd', 'if=/tmp/bench.bin', 'of=/dev/null', 'bs=1M']));
    return [
      { metric: 'agent ping round trip', value: median(ping), unit: 'ms', note: `p99 ${percentile(ping, 99).toFixed(2)} ms` },
      {
        metric: 'exec round trip of true',
        value: median(exec),
        unit: 'ms',
        target: 'p50 <= 3',
        note: `p90 ${percentile(exec, 90).toFixed(2)} ms, 200 runs`,
      },
      { metric: '  floor: in-guest fork+exec of true', value: median(spawnFloor), unit: 'ms', note: 'shell loop in the guest' },
      { metric: 'file write 64 MiB to /tmp (ext4)', value: median(write), unit: 'MiB/s', target: '>= 100 MB/s', note: `${RUNS} runs` },
      { metric: '  floor: in-guest dd to /tmp', value: median(ddWrite), unit: 'MiB/s', note: 'dd bs=1M from /dev/zero' },
      { metric: 'file write 64 MiB to /dev/shm', value: median(writeShm), unit: 'MiB/s', note: 'transport without the disk' },
      { metric: 'file read 64 MiB from /tmp', value: median(read), unit: 'MiB/s', target: '>= 100 MB/s', note: `${RUNS} runs` },
      { metric: '  floor: in-guest dd from /tmp', value: median(ddRead), unit: 'MiB/s', note: 'dd bs=1M to /dev/null' },
      { metric: 'QEMU RSS, idle 512 MiB sandbox', value: rss, unit: 'MiB', target: '<= 120' },
    ];
  } finally {
    await rt.close();
  }
}

const assets = await ensureAll();
console.log(`accelerator: ${assets.accel.accel} (${assets.accel.reason})\n`);
const only = process.env.BENCH_ONLY; // e.g. BENCH_ONLY=server
const sections: Record<string, () => Promise<Row[]>> = {
  boot: () => coldStart(assets),
  vm: onRunningVm,
  server: () => serverBench(RUNS),
  network: () => networkBench(RUNS),
  snapshots: () => snapshotBench(SNAPSHOT_RUNS),
  e2b: () => e2bBench(RUNS),
  mounts: () => mountBench(Math.min(RUNS, 5)),
  images: imageBench,
  fuzz: fuzzBench,
  soak: soakBench,
};
const chosen = only ? only.split(',') : Object.keys(sections);
const unknown = chosen.filter((s) => !Object.hasOwn(sections, s));
if (unknown.length) throw new Error(`BENCH_ONLY: unknown section ${unknown.join(', ')} (known: ${Object.keys(sections).join(', ')})`);
const rows: Row[] = [];
for (const s of chosen) rows.push(...(await (sections[s] as () => Promise<Row[]>)()));
printTable(rows);
const dir = join(root, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), accel: assets.accel, runs: RUNS, rows }, null, 2)}\n`);
console.log(`\nwritten to ${file}`);
