import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, SnapshotError, Snapshots, Templates } from '../../src/index.js';
import { cliIn } from '../fixtures/cli.js';
import { isolatedHome, type TestHome, waitFor } from '../fixtures/home.js';

/*
 * Snapshots, forks, templates and pauses as users drive them: the CLI and the
 * SDK against a real server in a home of its own, and that server killed in
 * the middle of a fork and of a pause.
 */
let t: TestHome;

const { vmbox, ok, refused } = cliIn(() => t.env);
const inspect = async (name: string) => JSON.parse(await ok('inspect', name));
/** QEMU processes of this home (its sandboxes and templates). */
const qemus = () =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(t.home);
      } catch {
        return false;
      }
    }).length;

before(() => {
  t = isolatedHome();
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
});

after(async () => {
  await t?.cleanup();
});

describe('snapshots, forks and templates from the CLI and the SDK', () => {
  it('snapshot create / ls / inspect, create --from-snapshot, fork --count, template warm / ls, rm', async () => {
    assert.match(await ok('template', 'warm', '--memory', '256'), /^[0-9a-f]{16}\n$/);
    assert.match(await ok('template', 'ls'), /KEY .*IMAGE .*base .*256 MiB/s);
    assert.equal((await ok('create', '--name', 'src', '--memory', '256')).trim(), 'src');
    assert.equal((await inspect('src')).origin.start, 'warm');
    await ok('exec', 'src', '--', 'sh', '-c', 'echo from-src > /root/f; sleep 600 > /dev/null 2>&1 &');
    const snap = await vmbox('snapshot', 'create', 'src', '--name', 'after-setup', '--label', 'k=v', '--integrity');
    assert.equal(snap.status, 0, snap.stderr);
    assert.equal(snap.stdout, 'after-setup\n');
    assert.match(snap.stderr, /memory snapshot, .* \(the sandbox paused \d+ ms\)/);
    assert.match(await ok('snapshot', 'ls'), /after-setup .* memory .* src .* base/);
    const first = JSON.parse(await ok('snapshot', 'inspect', 'after-setup'));
    assert.deepEqual([first.kind, first.labels, first.integrity], ['memory', { k: 'v' }, true]);
    assert.match(await refused('snapshot', 'create', 'src', '--name', 'after-setup'), /already exists/);
    // --force replaces it (nothing is layered on it yet).
    await ok('snapshot', 'create', 'src', '--name', 'after-setup', '--force');
    const info = JSON.parse(await ok('snapshot', 'inspect', 'after-setup'));
    assert.notEqual(info.id, first.id);

    await ok('create', '--name', 'copy', '--from-snapshot', 'after-setup', '-e', 'EXTRA=1', '--label', 'from=snap');
    assert.deepEqual((await inspect('copy')).origin, { start: 'snapshot', snapshot: info.id });
    assert.equal(await ok('exec', 'copy', '--', 'sh', '-c', 'cat /root/f; echo $EXTRA'), 'from-src\n1\n');
    assert.match(await refused('create', '--from-snapshot', 'after-setup', '--cpus', '2'), /cpus: is the snapshot's/);
    assert.match(await refused('snapshot', 'rm', 'after-setup'), /in use by copy/);

    const forked = await vmbox('fork', 'src', '--count', '3');
    assert.equal(forked.status, 0, forked.stderr);
    const copies = forked.stdout.trim().split('\n');
    assert.equal(copies.length, 3);
    for (const c of copies) {
      assert.equal(await ok('exec', c, '--', 'cat', '/root/f'), 'from-src\n');
      assert.equal((await inspect(c)).origin.parent, (await inspect('src')).id);
    }
    assert.equal(await ok('exec', 'src', '--', 'cat', '/root/f'), 'from-src\n', 'the source runs on');
    await ok('rm', '-f', 'copy', ...copies);
    await ok('snapshot', 'rm', 'after-setup');
    assert.equal((await ok('snapshot', 'ls')).trim().split('\n').length, 1, 'only the header');
    await ok('rm', '-f', 'src');
  });

  it('the SDK: snapshot, create from it, fork, pause, connect resumes, and an idle timeout that pauses', async () => {
    const sbx = await Sandbox.create({ memoryMib: 256 });
    await sbx.commands.run('echo sdk > /root/s');
    const snap = await sbx.snapshot({ name: 'sdk-snap' });
    assert.equal(snap.kind, 'memory');
    assert.ok(snap.timing.pausedMs <= snap.timing.totalMs, `paused ${snap.timing.pausedMs} ms of ${snap.timing.totalMs}`);
    const restored = await Sandbox.create({ snapshot: 'sdk-snap' });
    assert.equal((await restored.commands.run('cat /root/s')).stdout, 'sdk\n');
    // Sharing one memory file made of the source first.
    const [a, b] = await sbx.fork({ count: 2, shareMemory: true });
    assert.ok(a && b);
    assert.equal((await Snapshots.get((await a.getInfo()).origin.snapshot as string)).sharedMemory, true, 'made from the memory file');
    await a.commands.run('echo a > /root/s');
    assert.equal((await b.commands.run('cat /root/s')).stdout, 'sdk\n');
    assert.equal((await Snapshots.list()).map((s) => s.name).join(), 'sdk-snap');
    await assert.rejects(Snapshots.remove('sdk-snap'), /in use by/);
    await assert.rejects(
      Sandbox.create({ snapshot: 'no-such' }),
      (err: Error) => err instanceof SnapshotError && /no snapshot/.test(err.message),
    );
    assert.ok((await Templates.list()).length >= 1);

    await a.pause();
    assert.equal((await Sandbox.list({ query: { state: ['paused'] } })).length, 1);
    const back = await Sandbox.connect(a.sandboxId);
    assert.equal((await back.commands.run('cat /root/s')).stdout, 'a\n', 'connect resumed it');

    const idle = await Sandbox.create({ memoryMib: 256, idleTimeoutMs: 1500, onIdle: 'pause' });
    await idle.commands.run('echo idle > /dev/shm/i');
    // Polled through the list: a call on the sandbox itself would count as activity.
    const isPaused = async () => (await Sandbox.list({ query: { state: ['paused'] } })).some((s) => s.id === idle.sandboxId);
    assert.ok(await waitFor(isPaused, 20_000), 'paused when idle');
    assert.match((await idle.getInfo()).reason ?? '', /policy: idle/);
    const woke = await Sandbox.connect(idle.sandboxId);
    assert.equal((await woke.commands.run('cat /dev/shm/i')).stdout, 'idle\n');
    for (const s of [sbx, restored, a, b, woke, back, idle]) await s.kill().catch(() => {});
    await Snapshots.remove('sdk-snap');
  });

  it('a server killed mid-fork and mid-pause: the next one leaves the source running and no half copy', async () => {
    await ok('create', '--name', 'victim', '--memory', '256');
    await ok('exec', 'victim', '--', 'sh', '-c', 'head -c 20000000 /dev/urandom > /dev/shm/big; echo kept > /root/v');
    // Killed once the fork's hidden snapshot exists (copying, or restoring its copies).
    const fork = vmbox('fork', 'victim', '--count', '2');
    assert.ok(
      await waitFor(() => existsSync(join(t.home, 'snapshots')) && readdirSync(join(t.home, 'snapshots')).length > 0, 30_000),
      'the fork began',
    );
    process.kill(t.serverPid() as number, 'SIGKILL');
    await fork;
    assert.equal(await ok('exec', 'victim', '--', 'cat', '/root/v'), 'kept\n', 'the source runs (its guest was resumed)');
    const victimId = (await inspect('victim')).id;
    const left = JSON.parse(await ok('ls', '--json')) as { name: string; state: string; origin: { parent?: string } }[];
    for (const s of left) assert.equal(s.state, 'running', `${s.name} is whole`);
    // Either copies made it whole, or none is left; a hidden snapshot stays only under whole copies.
    const forks = left.filter((s) => s.origin.parent === victimId);
    if (forks.length === 0) assert.deepEqual(readdirSync(join(t.home, 'snapshots')), []);
    for (const f of forks) assert.equal(await ok('exec', f.name, '--', 'cat', '/root/v'), 'kept\n');
    if (forks.length) await ok('rm', '-f', ...forks.map((f) => f.name));

    // Killed while the pause saves the VM.
    const pause = vmbox('pause', 'victim');
    const dir = (await inspect('victim')).dir as string;
    await waitFor(() => existsSync(join(dir, 'paused.state.tmp')) || existsSync(join(dir, 'paused.state')), 30_000);
    process.kill(t.serverPid() as number, 'SIGKILL');
    await pause;
    const after = await inspect('victim');
    assert.ok(['running', 'paused', 'stopped'].includes(after.state), `settled: ${after.state} (${after.reason})`);
    assert.ok(!existsSync(join(dir, 'paused.state.tmp')), 'no half state left');
    if (after.state === 'paused') await ok('resume', 'victim');
    if (after.state !== 'stopped') assert.equal(await ok('exec', 'victim', '--', 'cat', '/root/v'), 'kept\n');
    await ok('rm', '-f', 'victim');
    assert.ok(await waitFor(() => qemus() === 0, 10_000), 'no QEMU of this home is left');
  });
});
