import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { QemuVm } from '../../src/vmm/qemu/provider.js';
import { sharedRuntime, withSandbox } from './helpers.js';

describe('the QEMU VM handle', () => {
  const rt = sharedRuntime();
  it('answers over QMP', async () => {
    await withSandbox(rt(), {}, async (s) => {
      const vm = s.machine().vm as QemuVm;
      const qmp = await vm.qmp();
      assert.deepEqual(await qmp.execute('query-status', {}), { running: true, singlestep: false, status: 'running' });
    });
  });

  it('stops gracefully through the agent before any signal', async () => {
    await withSandbox(rt(), {}, async (s) => {
      const { agent } = s.machine();
      const vm = s.machine().vm as QemuVm;
      const exit = await vm.stop({ graceful: () => agent.shutdown(), timeoutMs: 20_000 });
      assert.deepEqual(exit, { code: 0, signal: null });
      // The guest powered itself off (it rebooted into QEMU's -no-reboot), rather than being killed.
      assert.match(vm.consoleTail(), /reboot: Restarting system/);
      assert.equal(vm.isRunning(), false);
      assert.equal(vm.exitCode, 0);
    });
  });

  it('falls back to signals when the guest does not answer', async () => {
    await withSandbox(rt(), {}, async (s) => {
      const vm = s.machine().vm as QemuVm;
      const exit = await vm.stop({ graceful: () => new Promise(() => {}), timeoutMs: 1000 });
      assert.equal(vm.isRunning(), false);
      assert.ok(exit.code !== null || exit.signal !== null);
      assert.doesNotMatch(vm.consoleTail(), /Restarting system/);
    });
  });

  it('reports QEMU’s CPU time and resident memory', async () => {
    await withSandbox(rt(), {}, async (s) => {
      const vm = s.machine().vm as QemuVm;
      const m = await vm.metrics();
      assert.ok(m.rssBytes > 10 * 1024 * 1024, `rss ${m.rssBytes}`);
      assert.ok(m.cpuMs > 0);
    });
  });
});
