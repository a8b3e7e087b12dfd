import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withSandbox } from './helpers.js';

describe('the QEMU VM handle', () => {
  it('answers over QMP', async () => {
    await withSandbox({}, async (s) => {
      const qmp = await s.vm.qmp();
      assert.deepEqual(await qmp.execute('query-status', {}), { running: true, singlestep: false, status: 'running' });
    });
  });

  it('stops gracefully through the agent before any signal', async () => {
    await withSandbox({}, async (s) => {
      const exit = await s.vm.stop({ graceful: () => s.agent.shutdown(), timeoutMs: 20_000 });
      assert.deepEqual(exit, { code: 0, signal: null });
      // The guest powered itself off (it rebooted into QEMU's -no-reboot), rather than being killed.
      assert.match(s.vm.consoleTail(), /reboot: Restarting system/);
      assert.equal(s.vm.isRunning(), false);
      assert.equal(s.vm.exitCode, 0);
    });
  });

  it('falls back to signals when the guest does not answer', async () => {
    await withSandbox({}, async (s) => {
      const exit = await s.vm.stop({ graceful: () => new Promise(() => {}), timeoutMs: 1000 });
      assert.equal(s.vm.isRunning(), false);
      assert.ok(exit.code !== null || exit.signal !== null);
      assert.doesNotMatch(s.vm.consoleTail(), /Restarting system/);
    });
  });

  it('reports QEMU’s CPU time and resident memory', async () => {
    await withSandbox({}, async (s) => {
      const m = await s.vm.metrics();
      assert.ok(m.rssBytes > 10 * 1024 * 1024, `rss ${m.rssBytes}`);
      assert.ok(m.cpuMs > 0);
    });
  });
});
