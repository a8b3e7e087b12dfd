import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildAgentFuzzer, runAgentFuzzer } from '../fixtures/agent-fuzz.js';

/** Iterations here take a few seconds; `VMBOX_AGENT_FUZZ_ITERATIONS` runs longer, `VMBOX_FUZZ_SEED` another seed. */
const ITERATIONS = Number(process.env.VMBOX_AGENT_FUZZ_ITERATIONS ?? 150_000);
const SEED = Number(process.env.VMBOX_FUZZ_SEED ?? 1);

const hasGcc = spawnSync('gcc', ['--version']).status === 0;

describe('the agent’s parsers under fuzzing', { skip: hasGcc ? false : 'gcc is not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmbox-agent-fuzz-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keep every property of the frame decoder and the JSON parser through a seeded mutation loop', () => {
    const run = runAgentFuzzer(buildAgentFuzzer(dir), ITERATIONS, SEED, 60_000);
    assert.ok(run.ok, `the fuzz loop failed: ${run.output}`);
    assert.ok(run.summary, `unexpected summary: ${run.output}`);
    assert.equal(run.summary.iterations, ITERATIONS);
    // The loop reached past the decoder: frames answered, channels opened, JSON both taken and refused, writes read back.
    const { frames, stubs, parsed, refused, roundTrips } = run.summary;
    for (const [what, n] of Object.entries({ frames, stubs, parsed, refused, roundTrips })) assert.ok(n > 0, `no ${what}`);
  });
});
