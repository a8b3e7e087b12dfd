import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AgentClient } from '../../src/guest/client.js';
import { resolveImage } from '../../src/images/catalog.js';
import { createOverlay } from '../../src/runtime/overlay.js';
import { ensureAssets } from '../../src/setup/assets.js';
import type { VmHandle } from '../../src/vmm/provider.js';
import { QemuProvider, type QemuVm } from '../../src/vmm/qemu/provider.js';
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

describe('saving and restoring a VM through the provider', () => {
  it('restores a saved guest from its memory file and device state, running where it left off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmbox-save-'));
    const provider = new QemuProvider();
    const assets = await ensureAssets();
    const base = await resolveImage('base');
    await createOverlay(base.rootfsPath, join(dir, 'disk.qcow2'));
    const spec = (id: string, runDir: string) => ({
      id,
      cpus: 1,
      memoryMib: 256,
      accel: assets.accel.accel,
      kernelPath: assets.kernelPath,
      initrdPath: assets.initrd,
      rootDisk: { path: join(dir, 'disk.qcow2'), format: 'qcow2' as const },
      memoryFile: { path: join(dir, 'memory'), shared: true },
      runDir,
    });
    const first = await provider.start(spec(`save-${process.pid}`, join(dir, 'a')));
    let second: VmHandle | undefined;
    try {
      let agent = await AgentClient.connect(await first.connectAgent(), { timeoutMs: 60_000 });
      // State that lives only in guest memory: a file on tmpfs and a process.
      await agent.writeFile('/dev/shm/mark', 'in memory\n');
      const sleeper = agent.exec({ argv: ['sleep', '600'], detached: true });
      const pid = await sleeper.pid;
      agent.close();
      await first.save(join(dir, 'state'));
      await first.stop({ timeoutMs: 5000 });
      assert.ok(statSync(join(dir, 'state')).size > 0);

      second = await provider.start({ ...spec(`restored-${process.pid}`, join(dir, 'b')), restoreFrom: join(dir, 'state') });
      agent = await AgentClient.connect(await second.connectAgent(), { timeoutMs: 30_000 });
      const chunks: Buffer[] = [];
      for await (const c of agent.readFile('/dev/shm/mark')) chunks.push(c);
      assert.equal(Buffer.concat(chunks).toString(), 'in memory\n');
      assert.ok(
        (await agent.processes()).some((p) => p.pid === pid && !p.exited),
        'the process survived',
      );
      agent.close();
    } finally {
      await first.stop({ timeoutMs: 1000 });
      await second?.stop({ timeoutMs: 1000 });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
