/**
 * The agent's fuzz loop (agent/fuzz/fuzz.c: its frame decoder and JSON parser
 * under ASan and UBSan) run far longer than the unit test runs it:
 * `BENCH_FUZZ_ITERATIONS` (default 1,000,000) over `BENCH_FUZZ_SEEDS` seeds (default 2).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAgentFuzzer, runAgentFuzzer } from '../test/fixtures/agent-fuzz.js';
import type { Row } from './stats.js';

export async function fuzzBench(): Promise<Row[]> {
  const iterations = Number(process.env.BENCH_FUZZ_ITERATIONS || 1_000_000);
  const seeds = Number(process.env.BENCH_FUZZ_SEEDS || 2);
  const dir = mkdtempSync(join(tmpdir(), 'vmbox-bench-fuzz-'));
  try {
    const program = buildAgentFuzzer(dir);
    const rates: number[] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      const run = runAgentFuzzer(program, iterations, seed, 3_600_000);
      if (!run.ok) throw new Error(`the agent's fuzz loop failed (seed ${seed}): ${run.output}`);
      rates.push(iterations / (run.ms / 1000));
    }
    return [
      {
        metric: 'agent fuzz loop (frames, JSON; ASan+UBSan)',
        value: Math.min(...rates),
        unit: 'iter/s',
        note: `${iterations} iterations x ${seeds} seeds, no failure`,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
