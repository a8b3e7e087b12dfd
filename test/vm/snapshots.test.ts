import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { SNAPSHOT_FILES } from '../../src/runtime/snapshot-record.js';
import { httpServer } from '../fixtures/net-servers.js';
import { type TestRuntime, type TestSandbox, testRuntime, testSandbox } from '../fixtures/runtime.js';

let rt: TestRuntime;

before(async () => {
  rt = await testRuntime();
});

after(async () => {
  await rt?.close();
});

const out = async (sbx: TestSandbox, script: string) => {
  const r = await sbx.run(['sh', '-c', script]);
  assert.equal(r.exitCode, 0, `${script}: ${r.stderr}`);
  return r.stdout.trim();
};
const handle = (id: string) => {
  const info = rt.manager.get(id);
  return { ...info, run: (script: string) => out(sandboxOf(id), script) };
};
const sandboxOf = (id: string): TestSandbox => testSandbox(rt.manager, id);

describe('snapshots', () => {
  test('a running snapshot restores files, memory and a background process, attachable; the source runs on', async () => {
    const src = await rt.create({ memoryMib: 256 });
    await out(src, 'echo in-memory > /dev/shm/mark; echo on-disk > /root/mark; sync');
    const counter = src.exec(['sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick $i; echo $i > /dev/shm/count; sleep 0.2; done'], {
      background: true,
    });
    const pid = await counter.pid;
    await out(src, 'sleep 0.6');
    const { snapshot, timing } = await rt.manager.snapshots.create(src.id, { name: 'after-setup', labels: { k: 'v' } });
    assert.equal(snapshot.kind, 'memory');
    assert.ok(timing.pausedMs <= timing.totalMs, `paused ${timing.pausedMs} ms of ${timing.totalMs}`);
    // The source keeps running: its counter moves on.
    const a = Number(await out(src, 'cat /dev/shm/count'));
    await out(src, 'sleep 0.5');
    assert.ok(Number(await out(src, 'cat /dev/shm/count')) > a, 'the source carries on');

    const restored = await rt.manager.create({ snapshot: 'after-setup', name: 'restored', labels: { copy: 'yes' } });
    assert.equal(restored.origin.start, 'snapshot');
    assert.equal(restored.origin.snapshot, snapshot.id);
    assert.deepEqual(restored.labels, { copy: 'yes' });
    const r = handle(restored.id);
    assert.equal(await r.run('cat /dev/shm/mark /root/mark'), 'in-memory\non-disk');
    const b = Number(await r.run('cat /dev/shm/count'));
    await r.run('sleep 0.5');
    assert.ok(Number(await r.run('cat /dev/shm/count')) > b, 'the process runs in the copy');
    // The background process is the source's, attachable in the copy.
    const procs = await rt.manager.processes.list(restored.id);
    assert.ok(
      procs.some((p) => p.pid === pid && !p.exited),
      'listed in the copy',
    );
    let seen = '';
    const attached = rt.manager.processes.attach(restored.id, pid, {
      onStdout: (d) => {
        seen += d.toString();
      },
    });
    for (let i = 0; i < 50 && !/tick/.test(seen); i++) await new Promise((res) => setTimeout(res, 100));
    assert.match(seen, /tick \d+/);
    attached.abort();
    // Its own overlay: a write in the copy is not in the source, nor the other way.
    await r.run('echo copy > /root/only-copy; sync');
    assert.equal(await out(src, 'cat /root/only-copy 2>/dev/null || echo none'), 'none');
    // Once its memory is a file, restores map it (shared) and load the devices alone.
    await rt.manager.snapshots.memories.settled(snapshot.id);
    assert.equal(rt.manager.snapshots.get('after-setup').sharedMemory, true);
    const mapped = await rt.manager.create({ snapshot: 'after-setup', name: 'mapped' });
    const mp = handle(mapped.id);
    assert.equal(await mp.run('cat /dev/shm/mark /root/mark'), 'in-memory\non-disk');
    assert.ok(
      (await rt.manager.processes.list(mapped.id)).some((p) => p.pid === pid && !p.exited),
      'the process is in it too',
    );
    await mp.run('echo changed > /dev/shm/mark');
    const again = await rt.manager.create({ snapshot: 'after-setup' });
    assert.equal(await handle(again.id).run('cat /dev/shm/mark'), 'in-memory', "a copy's writes stay its own");
    for (const c of [mapped, again]) await rt.manager.remove(c.id, { force: true });
    // In use: the snapshot cannot go while the copy is layered on it.
    assert.throws(() => rt.manager.snapshots.remove('after-setup'), /in use by restored/);
    await rt.manager.remove(restored.id, { force: true });
    rt.manager.snapshots.remove('after-setup');
    assert.ok(!existsSync(rt.manager.snapshots.dir(snapshot.id)));
    await src.remove();
  });

  test('a fork leaves its parent running as it was; copies diverge from it and from each other', async () => {
    const parent = await rt.create({ memoryMib: 256 });
    await out(parent, 'echo base > /root/f; echo mem > /dev/shm/m');
    const running = parent.exec(['sleep', '600'], { background: true });
    const sleeper = await running.pid;
    const copies = await rt.manager.fork(parent.id, { count: 2 });
    assert.equal(copies.length, 2);
    for (const c of copies) {
      assert.equal(c.origin.start, 'fork');
      assert.equal(c.origin.parent, parent.id);
    }
    const [x, y] = copies.map((c) => handle(c.id)) as [ReturnType<typeof handle>, ReturnType<typeof handle>];
    await x.run('echo x > /root/f; echo x > /dev/shm/m');
    await y.run('echo y > /root/f');
    assert.equal(await x.run('cat /root/f /dev/shm/m'), 'x\nx');
    assert.equal(await y.run('cat /root/f /dev/shm/m'), 'y\nmem');
    assert.equal(await out(parent, 'cat /root/f /dev/shm/m'), 'base\nmem');
    assert.equal(await out(parent, `kill -0 ${sleeper} && echo alive`), 'alive', "the parent's process runs on");
    // Clones are not one another: their own randomness, hostname and boot id.
    const ids = await Promise.all(
      [x, y].map((c) => c.run('head -c 16 /dev/urandom | od -An -tx1; hostname; cat /proc/sys/kernel/random/boot_id')),
    );
    assert.notEqual(ids[0], ids[1]);
    const [rx, ry] = ids.map((s) => s.split('\n'));
    assert.notEqual(rx?.[0], ry?.[0], 'random bytes differ');
    assert.notEqual(rx?.[1], ry?.[1], 'hostnames differ');
    assert.notEqual(rx?.[2], ry?.[2], 'boot ids differ');
    assert.equal(rx?.[1], `vmbox-${copies[0]?.id.slice(0, 8)}`);
    // The hidden copy goes with the last sandbox on it.
    const hidden = copies[0]?.origin.snapshot as string;
    await rt.manager.remove(copies[0]?.id as string, { force: true });
    assert.ok(existsSync(rt.manager.snapshots.dir(hidden)));
    await rt.manager.remove(copies[1]?.id as string, { force: true });
    assert.ok(!existsSync(rt.manager.snapshots.dir(hidden)), 'the fork copy is removed with its last sandbox');
    assert.equal(rt.manager.snapshots.list().length, 0, 'fork copies are not listed');
    await parent.remove();
  });

  test('the clock is right after restoring a snapshot taken earlier, and the jump fires no timeout', async () => {
    const src = await rt.create({ memoryMib: 256 });
    // 5 s to live, 4 s of it spent between the snapshot and the restore: the copy's guest did not live them.
    const bounded = src.exec(['sleep', '30'], { background: true, timeoutMs: 5000 });
    const pid = await bounded.pid;
    await rt.manager.snapshots.create(src.id, { name: 'clock' });
    await src.remove();
    await new Promise((r) => setTimeout(r, 4000));
    const c = await rt.manager.create({ snapshot: 'clock' });
    const t = Number(await handle(c.id).run('date +%s'));
    assert.ok(Math.abs(t - Date.now() / 1000) < 2, `guest clock ${t}, host ${Date.now() / 1000}`);
    assert.equal(await handle(c.id).run(`kill -0 ${pid} && echo running`), 'running', 'its timeout counts guest time, not the gap');
    await rt.manager.remove(c.id, { force: true });
    rt.manager.snapshots.remove('clock');
  });

  test('a stopped sandbox snapshots its disk; a restore boots it', async () => {
    const src = await rt.create({ memoryMib: 256 });
    await out(src, 'echo kept > /root/k; sync');
    await rt.manager.stop(src.id);
    const { snapshot } = await rt.manager.snapshots.create(src.id, { name: 'disk-only' });
    assert.equal(snapshot.kind, 'disk');
    const c = await rt.manager.create({ snapshot: 'disk-only' });
    assert.equal(await handle(c.id).run('cat /root/k'), 'kept');
    await rt.manager.remove(c.id, { force: true });
    rt.manager.snapshots.remove('disk-only');
    await src.remove();
  });

  test('refused: a corrupted file with --integrity, another kernel, a changed field, a fork of a stopped sandbox', async () => {
    const src = await rt.create({ memoryMib: 256 });
    const { snapshot } = await rt.manager.snapshots.create(src.id, { name: 'guarded', integrity: true });
    assert.ok(
      snapshot.files.every((f) => f.sha256),
      'sums recorded',
    );
    await assert.rejects(rt.manager.create({ snapshot: 'guarded', cpus: 2 }), /cpus: is the snapshot's/);
    await assert.rejects(rt.manager.create({ snapshot: 'guarded', patches: [] }), /patches: cannot change in a restore/);
    // One byte flipped in the memory file, its size unchanged.
    const state = join(rt.manager.snapshots.dir(snapshot.id), SNAPSHOT_FILES.state);
    const fd = openSync(state, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, 4096);
    writeSync(fd, Buffer.from([(byte[0] ?? 0) ^ 0xff]), 0, 1, 4096);
    closeSync(fd);
    await assert.rejects(rt.manager.create({ snapshot: 'guarded' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'snapshotCorrupt');
      assert.match(err.message, /vm\.state does not match its recorded sha256/);
      return true;
    });
    // Another guest kernel than the one its memory was running.
    rt.manager.db.updateSnapshot({ ...snapshot, kernel: 'another-kernel' });
    await assert.rejects(rt.manager.create({ snapshot: 'guarded' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'snapshotIncompatible');
      assert.match(err.message, /kernel another-kernel/);
      return true;
    });
    assert.equal(rt.manager.list().length, 1, 'refused restores leave nothing');
    await rt.manager.stop(src.id);
    await assert.rejects(rt.manager.fork(src.id), /only a running sandbox forks/);
    rt.manager.snapshots.remove('guarded');
    await src.remove();
  });

  test('export → rm → import → restore; a hostile archive is refused and leaves nothing', async () => {
    const src = await rt.create({ memoryMib: 256 });
    await out(src, 'echo travelled > /root/t; echo mem > /dev/shm/t');
    await rt.manager.snapshots.create(src.id, { name: 'moving' });
    await src.remove();
    const tar = join(rt.home.home, 'moving.tar');
    await pipeline(await rt.manager.snapshots.exportArchive('moving'), createWriteStream(tar));
    rt.manager.snapshots.remove('moving');
    const imported = await rt.manager.snapshots.importArchive(createReadStream(tar), { name: 'arrived' });
    assert.equal(imported.kind, 'memory');
    assert.equal(imported.parent, null, 'its disk stands alone');
    const c = await rt.manager.create({ snapshot: 'arrived' });
    assert.equal(await handle(c.id).run('cat /root/t /dev/shm/t'), 'travelled\nmem');
    await rt.manager.remove(c.id, { force: true });
    rt.manager.snapshots.remove('arrived');

    // A disk that names a host file as its backing file would show the guest that file.
    const dir = join(rt.home.home, 'hostile');
    mkdirSync(dir);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', join(dir, 'disk.qcow2')]);
    const sum = createHash('sha256')
      .update(readFileSync(join(dir, 'disk.qcow2')))
      .digest('hex');
    const manifest = {
      format: 1,
      name: 'evil',
      kind: 'disk',
      spec: { image: 'base' },
      image: { name: 'base', config: {} },
      kernel: 'k',
      agent: 'a',
      files: [{ name: 'disk.qcow2', bytes: statSync(join(dir, 'disk.qcow2')).size, sha256: sum }],
    };
    writeFileSync(join(dir, 'snapshot.json'), JSON.stringify(manifest));
    execFileSync('tar', ['-cf', join(dir, 'evil.tar'), '-C', dir, 'snapshot.json', 'disk.qcow2']);
    await assert.rejects(rt.manager.snapshots.importArchive(createReadStream(join(dir, 'evil.tar'))), /names a file outside it/);
    execFileSync('tar', ['-cf', join(dir, 'odd.tar'), '-C', dir, 'snapshot.json', 'evil.tar']);
    await assert.rejects(rt.manager.snapshots.importArchive(createReadStream(join(dir, 'odd.tar'))), /unexpected entry "evil.tar"/);
    assert.equal(rt.manager.snapshots.list().length, 0);
    assert.deepEqual(readdirSync(join(rt.home.home, 'snapshots')), [], 'nothing left behind');
  });

  test('a snapshot, a pause and a resume asked at once take turns on the VM', async () => {
    const src = await rt.create({ memoryMib: 256 });
    await out(src, 'echo turns > /dev/shm/t');
    const [snap, paused, resumed] = await Promise.allSettled([
      rt.manager.snapshots.create(src.id, { name: 'turns' }),
      rt.manager.pause(src.id),
      rt.manager.resume(src.id),
    ]);
    for (const r of [snap, paused, resumed]) assert.equal(r.status, 'fulfilled', String((r as PromiseRejectedResult).reason));
    assert.equal(await out(src, 'cat /dev/shm/t'), 'turns');
    const c = await rt.manager.create({ snapshot: 'turns' });
    assert.equal(await handle(c.id).run('cat /dev/shm/t'), 'turns');
    await rt.manager.remove(c.id, { force: true });
    rt.manager.snapshots.remove('turns');
    await src.remove();
  });

  test('copies made by a restore, a fork and a resume have their network, under the same policy', async () => {
    const server = await httpServer('127.0.0.1');
    const fetch = (id: string) => handle(id).run(`wget -q -T 5 -O - http://host.vmbox.internal:${server.port}/ 2>&1 || echo failed`);
    try {
      const src = await rt.create({ memoryMib: 256, network: { allow: [`host.vmbox.internal:${server.port}`] } });
      assert.match(await fetch(src.id), /hello from 127\.0\.0\.1/);
      await rt.manager.snapshots.create(src.id, { name: 'networked' });
      const restored = await rt.manager.create({ snapshot: 'networked' });
      const [forked] = await rt.manager.fork(src.id);
      await rt.manager.pause(src.id);
      await rt.manager.resume(src.id);
      for (const id of [restored.id, forked?.id as string, src.id]) assert.match(await fetch(id), /hello from 127\.0\.0\.1/, id);
      // A restore may open or close it: this one has no network at all.
      const closed = await rt.manager.create({ snapshot: 'networked', network: { enabled: false } });
      assert.match(await fetch(closed.id), /failed|bad address|timed out/);
      for (const id of [restored.id, forked?.id as string, closed.id, src.id]) await rt.manager.remove(id, { force: true });
      rt.manager.snapshots.remove('networked');
    } finally {
      await server.close();
    }
  });
});
