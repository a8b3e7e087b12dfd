import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { isAlive } from '../../src/util/process.js';
import { type TestRuntime, testRuntime } from '../fixtures/runtime.js';

let rt: TestRuntime;

before(async () => {
  rt = await testRuntime();
});

after(async () => {
  await rt?.close();
});

describe('pause and resume', () => {
  test('pause ends the VM and keeps memory, processes and disk; resume brings them back', async () => {
    const sbx = await rt.create({ memoryMib: 256 });
    // State that lives only in guest memory (tmpfs) and a process that keeps counting.
    await sbx.run(['sh', '-c', 'echo in-memory > /dev/shm/mark; echo on-disk > /root/mark']);
    const counter = sbx.exec(['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /dev/shm/count; sleep 0.1; done'], {
      background: true,
    });
    const pid = await counter.pid;
    await sbx.run(['sleep', '0.5']);

    const pidBefore = rt.manager.get(sbx.id).pid as number;
    const paused = await rt.manager.pause(sbx.id);
    assert.equal(paused.state, 'paused');
    assert.equal(paused.pid, null);
    assert.ok(!isAlive(pidBefore), 'the QEMU process is gone');
    assert.ok(existsSync(rt.manager.pausedState(sbx.id)));
    await assert.rejects(sbx.run(['true']), /paused/);

    const resumed = await rt.manager.resume(sbx.id);
    assert.equal(resumed.state, 'running');
    assert.ok(!existsSync(rt.manager.pausedState(sbx.id)), 'the saved state is dropped once resumed');
    const r = await sbx.run([
      'sh',
      '-c',
      `cat /dev/shm/mark /root/mark; a=$(cat /dev/shm/count); sleep 0.5; b=$(cat /dev/shm/count); [ "$b" -gt "$a" ] && echo counting; kill -0 ${pid} && echo alive`,
    ]);
    assert.deepEqual(r.stdout.trim().split('\n'), ['in-memory', 'on-disk', 'counting', 'alive']);
    // The clock is the host's again, not the moment of the pause.
    const t = Number((await sbx.run(['date', '+%s'])).stdout.trim());
    assert.ok(Math.abs(t - Date.now() / 1000) < 5, `guest clock ${t}`);
    assert.match(sbx.logs(['system']).join('\n'), /paused: memory and devices saved .*\n.*resumed/s);
    await sbx.remove();
  });

  test('100 pause and resume cycles lose nothing written between them (a checksum of the whole tree after each)', async () => {
    const sbx = await rt.create({ memoryMib: 256 });
    // Every regular file outside the kernel's own trees, summed: what a resume must give back whole.
    const treeSum = 'find / -xdev -type f ! -path "/proc/*" ! -path "/sys/*" ! -path "/dev/*" -print0 | sort -z | xargs -0 md5sum | md5sum';
    for (let i = 0; i < 100; i++) {
      // Written, not synced: what the guest's page cache holds goes with its memory.
      await sbx.run([
        'sh',
        '-c',
        `mkdir -p /data/${i % 7} && head -c ${4096 + i * 97} /dev/urandom > /data/${i % 7}/f${i} && rm -f /data/${(i + 3) % 7}/f${i - 5}`,
      ]);
      const sum = (await sbx.run(['sh', '-c', treeSum])).stdout;
      await rt.manager.pause(sbx.id);
      await rt.manager.resume(sbx.id);
      assert.equal((await sbx.run(['sh', '-c', treeSum])).stdout, sum, `cycle ${i}`);
    }
    // And on its disk once the guest is powered off and booted again.
    const sum = (await sbx.run(['sh', '-c', 'sync; cat $(find /data -type f | sort) | md5sum'])).stdout;
    await rt.manager.restart(sbx.id);
    assert.equal((await sbx.run(['sh', '-c', 'cat $(find /data -type f | sort) | md5sum'])).stdout, sum);
    await sbx.remove();
  });

  test('a paused sandbox can be stopped (its memory dropped) or removed; only a running one pauses', async () => {
    const sbx = await rt.create({ memoryMib: 256 });
    await assert.rejects(rt.manager.resume(sbx.id), /only a paused sandbox resumes/);
    await rt.manager.pause(sbx.id);
    await assert.rejects(rt.manager.pause(sbx.id), /cannot pause .* it is paused/);
    const stopped = await rt.manager.stop(sbx.id);
    assert.equal(stopped.state, 'stopped');
    assert.ok(!existsSync(rt.manager.pausedState(sbx.id)));
    await rt.manager.start(sbx.id);
    await rt.manager.pause(sbx.id);
    await rt.manager.remove(sbx.id);
    assert.equal(rt.manager.list().length, 0);
  });
});
