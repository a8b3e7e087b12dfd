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
    const sbx = await Sandbox.create({ name: 'bench', memoryMib: 256 });

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
