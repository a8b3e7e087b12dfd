/**
 * The server's numbers: exec through CLI → server → agent and through the
 * SDK alone, the server's memory with 0 and 20 sandboxes, 20 concurrent creates.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Sandbox } from '../src/sdk/sandbox.js';
import { processMetrics } from '../src/vmm/qemu/provider.js';
import { isolatedHome } from '../test/fixtures/home.js';
import { median, percentile, type Row } from './stats.js';

const vmbox = fileURLToPath(new URL('../dist/vmbox.mjs', import.meta.url));
const MIB = 1024 * 1024;
const CONCURRENT = Number(process.env.BENCH_CONCURRENT || 20);

function timeCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [vmbox, ...args], { stdio: 'ignore', env });
    child.once('exit', (code) =>
      code === 0 ? resolve(performance.now() - t0) : reject(new Error(`vmbox ${args.join(' ')} exited ${code}`)),
    );
  });
}

export async function serverBench(runs: number): Promise<Row[]> {
  const home = isolatedHome();
  const saved = process.env.VMBOX_HOME;
  process.env.VMBOX_HOME = home.home;
  try {
    await Sandbox.list(); // starts the server
    const server = home.serverPid() as number;
    await new Promise((r) => setTimeout(r, 1000));
    const rssIdle = processMetrics(server).rssBytes / MIB;
    const sbx = await Sandbox.create({ name: 'bench', memoryMib: 512 });

    const sdk: number[] = [];
    for (let i = 0; i < 20; i++) await sbx.commands.run('true'); // warm-up
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      await sbx.commands.run(['true']);
      sdk.push(performance.now() - t);
    }
    const cli: number[] = [];
    for (let i = 0; i < runs; i++) cli.push(await timeCli(['exec', 'bench', '--', 'true'], home.env));
    const nodeStart: number[] = [];
    for (let i = 0; i < runs; i++) nodeStart.push(await timeCli(['--version'], home.env));
    const files = await fileBench(sbx, Math.max(3, Math.min(runs, 5)));
    const echo = await ptyEchoBench(sbx);
    await sbx.kill();

    const t0 = performance.now();
    const many = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => Sandbox.create({ name: `c${i}`, memoryMib: 128 })));
    const createSec = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    const rssLoaded = processMetrics(server).rssBytes / MIB;
    await Promise.all(many.map((s) => s.kill()));
    return [
      {
        metric: 'exec true: SDK commands.run → server → agent',
        value: median(sdk),
        unit: 'ms',
        target: 'p50 <= 5',
        note: `p90 ${percentile(sdk, 90).toFixed(2)} ms, 200 runs`,
      },
      { metric: 'exec true: vmbox exec CLI end to end', value: median(cli), unit: 'ms', note: `${runs} runs` },
      { metric: '  of which: CLI start (vmbox --version)', value: median(nodeStart), unit: 'ms', note: `${runs} runs` },
      ...files,
      {
        metric: 'PTY echo: a key sent, its echo seen (SDK)',
        value: median(echo),
        unit: 'ms',
        note: `p90 ${percentile(echo, 90).toFixed(2)} ms, ${echo.length} keys`,
      },
      { metric: 'server RSS, no sandbox', value: rssIdle, unit: 'MiB', note: 'just started' },
      { metric: `server RSS, ${CONCURRENT} sandboxes running`, value: rssLoaded, unit: 'MiB' },
      { metric: `${CONCURRENT} concurrent creates (128 MiB each)`, value: createSec, unit: 's', note: 'until every agent answers' },
      { metric: '  creates per second', value: CONCURRENT / createSec, unit: '/s' },
    ];
  } finally {
    if (saved === undefined) delete process.env.VMBOX_HOME;
    else process.env.VMBOX_HOME = saved;
    await home.cleanup();
  }
}

const FILE_MIB = 100;

/** 100 MiB through sbx.files each way: to the guest's disk, to /dev/null (the transport alone), and back. */
async function fileBench(sbx: Sandbox, runs: number): Promise<Row[]> {
  const chunk = Buffer.alloc(MIB, 0x5a);
  async function* data() {
    for (let i = 0; i < FILE_MIB; i++) yield chunk;
  }
  const rate = (ms: number) => (FILE_MIB * MIB) / 1e6 / (ms / 1000); // MB/s, as the target is given
  const toDisk: number[] = [];
  const toNull: number[] = [];
  const fromDisk: number[] = [];
  const ddFloor: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    await sbx.commands.run(`dd if=/dev/zero of=/root/dd.bin bs=1M count=${FILE_MIB} 2>/dev/null`);
    ddFloor.push(rate(performance.now() - t));
    await sbx.commands.run('sync'); // untimed: each write starts with no dirty pages left by the other
    t = performance.now();
    await sbx.files.write('/root/bench.bin', data());
    toDisk.push(rate(performance.now() - t));
    await sbx.commands.run('sync');
    t = performance.now();
    await sbx.files.write('/dev/null', data());
    toNull.push(rate(performance.now() - t));
    t = performance.now();
    let n = 0;
    for await (const c of await sbx.files.read('/root/bench.bin', { format: 'stream' })) n += c.length;
    if (n !== FILE_MIB * MIB) throw new Error(`read ${n} bytes`);
    fromDisk.push(rate(performance.now() - t));
  }
  await sbx.files.remove('/root/bench.bin');
  await sbx.files.remove('/root/dd.bin');
  const note = `${runs} runs, MB/s = 10^6 bytes/s`;
  return [
    { metric: `files.write ${FILE_MIB} MiB to the guest disk (SDK)`, value: median(toDisk), unit: 'MB/s', target: '>= 100', note },
    {
      metric: `  floor: in-guest dd of ${FILE_MIB} MiB to the disk`,
      value: median(ddFloor),
      unit: 'MB/s',
      note: 'dd bs=1M, run by the SDK',
    },
    { metric: `  files.write ${FILE_MIB} MiB to /dev/null`, value: median(toNull), unit: 'MB/s', note: 'the transport alone' },
    { metric: `files.read ${FILE_MIB} MiB from the guest disk (SDK)`, value: median(fromDisk), unit: 'MB/s', target: '>= 100', note },
  ];
}

/** One key at a time into `cat` on a terminal: the time until the guest's line discipline echoes it back. */
async function ptyEchoBench(sbx: Sandbox): Promise<number[]> {
  let seen = 0;
  let wake: (() => void) | undefined;
  const term = await sbx.pty.create({
    cols: 80,
    rows: 24,
    cmd: ['/bin/cat'],
    killOnDisconnect: true,
    onData: (b) => {
      seen += b.length;
      wake?.();
    },
  });
  const samples: number[] = [];
  for (let i = 0; i < 220; i++) {
    const before = seen;
    const t = performance.now();
    const echoed = new Promise<void>((r) => {
      wake = () => {
        if (seen > before) r();
      };
    });
    await term.sendInput(i % 50 === 49 ? '\n' : 'x');
    await echoed;
    if (i >= 20) samples.push(performance.now() - t); // the first keys warm up the paths
  }
  await term.kill();
  return samples;
}
