import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isolatedHome } from '../fixtures/home.js';

/** The everyday edges of the CLI, each driven as a user would: pipes, no terminal, cp, logs, options. */
const vmbox = fileURLToPath(new URL('../../vmbox', import.meta.url));
const t = isolatedHome();
// A small log budget, so a command's output rotates many times within a test.
const env = { ...t.env, VMBOX_LOG_MAX_BYTES: String(64 * 1024) };
const run = (args: string[], opts: { input?: string; timeout?: number } = {}) =>
  spawnSync(vmbox, args, { encoding: 'utf8', env, maxBuffer: 64 << 20, timeout: opts.timeout ?? 120_000, input: opts.input });
/** A shell pipeline with `$VMBOX` as the CLI. */
const sh = (line: string) => spawnSync('sh', ['-c', line], { encoding: 'utf8', env: { ...env, VMBOX: vmbox }, timeout: 120_000 });
const _inGuest = (script: string) => run(['exec', 'dev', '--', 'sh', '-c', script]);
const scratch = mkdtempSync(join(tmpdir(), 'vmbox-edges-'));
const imageTag = `edges-entrypoint:${process.pid}`;

before(() => {
  // The in-process SDK talks to the same server as the CLI runs.
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
  const r = run(['create', '--name', 'dev', '--memory', '256']);
  assert.equal(r.status, 0, r.stderr);
});
after(async () => {
  run(['rm', '-f', 'dev', 'ep']);
  run(['rmi', '--force', imageTag]);
  rmSync(scratch, { recursive: true, force: true });
  await t.cleanup();
});

describe('a reader that goes away (vmbox … | head)', () => {
  it('ends exec, run, logs and inspect quietly, as cat does', () => {
    for (const line of ['"$VMBOX" exec dev -- seq 100000 | head -1', '"$VMBOX" run -- seq 100000 | head -1']) {
      const r = sh(line);
      assert.equal(r.stdout, '1\n', line);
      assert.equal(r.stderr, '', `${line}: ${r.stderr}`);
    }
    // `true` is gone before the CLI writes its first byte.
    for (const line of ['"$VMBOX" inspect dev | true', '"$VMBOX" logs dev | true', '"$VMBOX" exec dev -- seq 1000 | true']) {
      const r = sh(line);
      assert.equal(r.stderr, '', `${line}: ${r.stderr}`);
    }
  });
});

describe('vmbox shell without a terminal', () => {
  it('runs the shell on our stdin and output, without a terminal in the guest', () => {
    const r = run(['shell', 'dev'], { input: 'echo hi\n[ -t 0 ] && echo on-a-tty\nexit 3\n', timeout: 60_000 });
    assert.equal(r.signal, null, 'it ended on its own');
    assert.equal(r.stdout, 'hi\n', r.stderr);
    assert.equal(r.status, 3);
  });
});

describe('vmbox logs --source system', () => {
  it('keeps why the sandbox started and stopped however much its commands print', () => {
    // 64 KiB of budget against about 2.7 MB of output: the output rotates dozens of times.
    const big = run(['exec', 'dev', '--', 'seq', '400000']);
    assert.equal(big.status, 0, big.stderr);
    const system = run(['logs', '--source', 'system', 'dev']);
    assert.equal(system.status, 0, system.stderr);
    assert.match(system.stdout, /\[vmbox\] created from image base/);
    assert.match(system.stdout, /\[vmbox\] started \(QEMU pid \d+\)/);
    assert.equal(run(['logs', '--tail', '1', 'dev']).stdout, '400000\n', 'the output is there too, its newest kept');
    const both = run(['logs', '--source', 'system,stdout', 'dev']).stdout;
    assert.ok(both.indexOf('[vmbox] started') < both.indexOf('400000\n'), 'in time order');
  });
});
