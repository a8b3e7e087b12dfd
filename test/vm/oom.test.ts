import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isolatedHome } from '../fixtures/home.js';
import { sharedSandbox } from './helpers.js';

/** Doubles a string until the guest runs out of memory. */
const HOG = ['awk', 'BEGIN { s = "x"; while (1) s = s s }'];

describe('commands killed by the OOM killer', () => {
  // Small, so the hog hits the guest's OOM killer within a few doublings.
  const sbx = sharedSandbox({ memoryMib: 128 });

  it('says so when the command itself was killed for lack of memory', async () => {
    const r = await sbx().run(HOG);
    assert.equal(r.exitCode, 137);
    assert.equal(r.signal, 9);
    assert.equal(r.oomKilled, true);
    // The sandbox's log says it too, among vmbox's own lines.
    assert.ok(
      sbx()
        .logs(['system'])
        .some((l) => /command awk .* was killed for lack of memory/.test(l)),
      sbx().logs(['system']).join('\n'),
    );
  });

  it('says so on the CLI: vmbox run tells why the command died', async () => {
    const t = isolatedHome();
    try {
      const r = spawnSync(fileURLToPath(new URL('../../vmbox', import.meta.url)), ['run', '--memory', '128', '--', ...HOG], {
        encoding: 'utf8',
        env: t.env,
      });
      assert.equal(r.status, 137, r.stderr);
      assert.match(r.stderr, /killed for lack of memory .*--memory/);
    } finally {
      await t.cleanup();
    }
  });

  it('says so when a descendant was, whatever the command then exits with', async () => {
    const r = await sbx().run(['sh', '-c', `${HOG.map((a) => `'${a}'`).join(' ')}; echo "hog ended: $?"; exit 3`]);
    assert.equal(r.stdout, 'hog ended: 137\n');
    assert.equal(r.exitCode, 3);
    assert.equal(r.oomKilled, true);
  });

  it('tells which of two running commands lost the process', async () => {
    const bystander = sbx().run(['sleep', '3']);
    const hog = await sbx().run(HOG);
    assert.equal(hog.oomKilled, true);
    const other = await bystander;
    assert.equal(other.exitCode, 0);
    assert.equal(other.oomKilled, undefined);
  });

  it('does not for a plain SIGKILL, nor for the next command', async () => {
    const killed = await sbx().run(['sh', '-c', 'kill -9 $$']);
    assert.equal(killed.exitCode, 137);
    assert.equal(killed.oomKilled, undefined);
    const ok = await sbx().run(['echo', 'still here']);
    assert.equal(ok.stdout, 'still here\n');
    assert.equal(ok.oomKilled, undefined);
  });
});
