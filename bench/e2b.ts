/**
 * E2B's official SDK against vmbox's own, side by side on one server over
 * TCP: `commands.run('true')` on the same sandbox (interleaved rounds), and a
 * create + first command through each (E2B's `base` template and the same
 * e2b-base image through vmbox's SDK, alternating).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox as E2bSandbox } from 'e2b';
import { Sandbox } from '../src/sdk/sandbox.js';
import { startE2bServer } from '../test/fixtures/e2b-server.js';
import { median, percentile, type Row } from './stats.js';

const EXEC_RUNS = 200;

export async function e2bBench(runs: number): Promise<Row[]> {
  const server = await startE2bServer();
  try {
    const apiKey = await server.key('--name', 'bench');
    const e2bOpts = { apiKey, apiUrl: server.url, sandboxUrl: server.url, requestTimeoutMs: 120_000 };
    const vmboxOpts = { url: server.url, token: readFileSync(join(server.home.home, 'token'), 'utf8').trim() };

    // The first create builds the image and, in the background, its warm template: not measured.
    const first = await E2bSandbox.create(e2bOpts);
    await first.commands.run('true');
    const e2b = first;
    const own = await Sandbox.connect(e2b.sandboxId, vmboxOpts);

    const viaE2b: number[] = [];
    const viaVmbox: number[] = [];
    // E2B's commands go through `bash -l -c`: the same shell through vmbox's SDK says what the shell costs.
    const viaVmboxBash: number[] = [];
    const variants: Array<[number[], () => Promise<unknown>]> = [
      [viaE2b, () => e2b.commands.run('true')],
      [viaVmbox, () => own.commands.run(['true'])],
      [viaVmboxBash, () => own.commands.run(['/bin/bash', '-l', '-c', 'true'])],
    ];
    for (const [, run] of variants) for (let i = 0; i < 20; i++) await run(); // warm-up
    // Rounds of 10 each, in turn, so all see the same machine state.
    for (let round = 0; round < EXEC_RUNS / 10; round++) {
      for (const [samples, run] of variants) {
        for (let i = 0; i < 10; i++) {
          const t = performance.now();
          await run();
          samples.push(performance.now() - t);
        }
      }
    }
    await e2b.kill();
    // Let the template finish before the create rounds.
    await new Promise((r) => setTimeout(r, 5000));

    const createE2b: number[] = [];
    const createVmbox: number[] = [];
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      const a = await E2bSandbox.create(e2bOpts);
      await a.commands.run('true');
      createE2b.push(performance.now() - t);
      await a.kill();
      t = performance.now();
      const b = await Sandbox.create({ image: 'e2b-base', ...vmboxOpts });
      await b.commands.run(['true']);
      createVmbox.push(performance.now() - t);
      await b.kill();
    }
    const ratio = median(viaE2b) / median(viaVmbox);
    return [
      {
        metric: "exec true: E2B's SDK commands.run (bash -l -c)",
        value: median(viaE2b),
        unit: 'ms',
        note: `p90 ${percentile(viaE2b, 90).toFixed(1)} ms, ${viaE2b.length} runs`,
      },
      {
        metric: "exec true: vmbox's SDK, same sandbox",
        value: median(viaVmbox),
        unit: 'ms',
        note: `p90 ${percentile(viaVmbox, 90).toFixed(1)} ms, ${viaVmbox.length} runs, interleaved`,
      },
      { metric: "  E2B's SDK / vmbox's SDK", value: ratio, unit: 'x', target: '<= 1.5' },
      {
        metric: "exec bash -l -c true: vmbox's SDK, same sandbox",
        value: median(viaVmboxBash),
        unit: 'ms',
        note: `p90 ${percentile(viaVmboxBash, 90).toFixed(1)} ms: the login shell E2B runs every command in`,
      },
      { metric: "  E2B's SDK / vmbox's SDK, same bash -l -c", value: median(viaE2b) / median(viaVmboxBash), unit: 'x' },
      { metric: "create + first command: E2B's SDK (base)", value: median(createE2b), unit: 'ms', note: `${runs} runs` },
      {
        metric: "create + first command: vmbox's SDK (e2b-base)",
        value: median(createVmbox),
        unit: 'ms',
        note: `${runs} runs, alternating`,
      },
    ];
  } finally {
    await server.stop();
  }
}
