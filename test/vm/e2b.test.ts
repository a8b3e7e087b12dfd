import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthenticationError, Sandbox, SandboxNotFoundError } from 'e2b';
import { runCli } from '../fixtures/cli.js';
import { type E2bServer, startE2bServer } from '../fixtures/e2b-server.js';
import { waitFor } from '../fixtures/home.js';

/*
 * E2B's official JS SDK, unchanged, against `vmbox serve --listen`: its control
 * plane (create, connect, list, getInfo, setTimeout, metrics, pause, kill) with
 * keys made by `vmbox api-key create`. The in-sandbox API (envd) is in
 * e2b-envd.test.ts.
 */
let server: E2bServer;
let apiUrl: string;
let key: string;
let otherKey: string;
let adminKey: string;
const opts = () => ({ apiKey: key, apiUrl, sandboxUrl: apiUrl, requestTimeoutMs: 120_000 });

before(async () => {
  server = await startE2bServer();
  apiUrl = server.url;
  key = await server.key('--name', 'agent');
  otherKey = await server.key('--name', 'other');
  adminKey = await server.key('--name', 'ops', '--admin');
});

after(() => server?.stop());

describe("E2B's SDK against vmbox", () => {
  it('makes keys as E2B’s SDKs expect them, keeps only their hashes, and lists them', async () => {
    assert.match(key, /^e2b_[0-9a-f]{40}$/);
    const r = await runCli(['api-key', 'ls'], server.home.env);
    assert.match(r.stdout, /agent .*\n.*other .*\n.*ops .* admin/s);
    assert.ok(!readFileSync(join(server.home.home, 'state.db')).includes(key), 'the key itself is not stored');
  });

  it('creates, gets, lists, times out, pauses, connects and kills sandboxes', async () => {
    const sbx = await Sandbox.create('base', { ...opts(), metadata: { user: 'u1' }, timeoutMs: 120_000 });
    const info = await sbx.getInfo();
    assert.equal(info.sandboxId, sbx.sandboxId);
    assert.equal(info.templateId, 'base', "E2B's base template (vmbox's e2b-base image)");
    assert.deepEqual(info.metadata, { user: 'u1' });
    assert.equal(info.state, 'running');
    assert.ok(Math.abs(info.endAt.getTime() - info.startedAt.getTime() - 120_000) < 2000, 'endAt is start + timeout');

    const listed = await Sandbox.list({ ...opts(), query: { metadata: { user: 'u1' } } }).nextItems();
    assert.deepEqual(
      listed.map((s) => s.sandboxId),
      [sbx.sandboxId],
    );
    // Another key does not see it; an admin key does.
    assert.equal((await Sandbox.list({ ...opts(), apiKey: otherKey }).nextItems()).length, 0);
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId, { ...opts(), apiKey: otherKey }), SandboxNotFoundError);
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, { ...opts(), apiKey: adminKey })).sandboxId, sbx.sandboxId);

    await sbx.setTimeout(600_000);
    const later = await sbx.getInfo();
    assert.ok(later.endAt.getTime() - Date.now() > 500_000, 'the timeout moved');
    const metrics = await sbx.getMetrics();
    assert.ok(metrics.length > 0 && metrics[0]?.memTotal && metrics[0].memTotal > 0, 'metrics carry the guest memory');

    await sbx.pause();
    assert.equal((await sbx.getInfo()).state, 'paused');
    const back = await Sandbox.connect(sbx.sandboxId, opts());
    assert.equal((await back.getInfo()).state, 'running', 'connect resumed it');

    assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), true);
    assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), false, 'an unknown sandbox is false');
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId, opts()), SandboxNotFoundError);
  });

  it('pages through the list with next tokens', async () => {
    const made = await Promise.all([1, 2, 3].map((i) => Sandbox.create('base', { ...opts(), metadata: { page: 'yes', i: String(i) } })));
    const pager = Sandbox.list({ ...opts(), query: { metadata: { page: 'yes' } }, limit: 2 });
    const first = await pager.nextItems();
    assert.equal(first.length, 2);
    assert.ok(pager.hasNext);
    const second = await pager.nextItems();
    assert.equal(second.length, 1);
    assert.ok(!pager.hasNext);
    assert.deepEqual([...first, ...second].map((s) => s.sandboxId).sort(), made.map((s) => s.sandboxId).sort());
    for (const s of made) await s.kill();
  });

  it('lists newest first (or as ordered), filters by start and template, and connect never shortens a timeout', async () => {
    const older = await Sandbox.create('base', { ...opts(), metadata: { order: 'yes' } });
    const newer = await Sandbox.create('base', { ...opts(), metadata: { order: 'yes' }, timeoutMs: 300_000 });
    const ids = async (q: Parameters<typeof Sandbox.list>[0]) =>
      (await Sandbox.list({ ...opts(), ...q }).nextItems()).map((s) => s.sandboxId);
    assert.deepEqual(await ids({ query: { metadata: { order: 'yes' } } }), [newer.sandboxId, older.sandboxId]);
    assert.deepEqual(await ids({ query: { metadata: { order: 'yes' } }, order: 'asc' }), [older.sandboxId, newer.sandboxId]);
    const newerStart = (await newer.getInfo()).startedAt;
    const after = await ids({ query: { metadata: { order: 'yes' }, startedAfter: new Date(newerStart.getTime() + 1000) } });
    assert.deepEqual(after, [], 'nothing started a second after the newest');
    assert.equal((await ids({ query: { metadata: { order: 'yes' }, template: 'unknown-template' } })).length, 0);
    assert.equal((await ids({ query: { metadata: { order: 'yes' }, template: 'base' } })).length, 2);

    const endAt = (await newer.getInfo()).endAt.getTime();
    await Sandbox.connect(newer.sandboxId, { ...opts(), timeoutMs: 10_000 });
    assert.ok((await newer.getInfo()).endAt.getTime() >= endAt - 1000, 'a shorter timeout on connect leaves endAt');
    await Sandbox.connect(newer.sandboxId, { ...opts(), timeoutMs: 900_000 });
    assert.ok((await newer.getInfo()).endAt.getTime() > endAt + 500_000, 'a longer one moves it');

    // Metrics in a window that ended before the sandbox existed: none.
    const long = Math.floor(newerStart.getTime() / 1000) - 3600;
    assert.deepEqual(await newer.getMetrics({ start: new Date(long * 1000), end: new Date((long + 60) * 1000) }), []);
    await older.kill();
    await newer.kill();
  });

  it('pauses at its timeout when asked (with memory, or its disk alone), and connect wakes it', async () => {
    const withMemory = await Sandbox.create('base', { ...opts(), timeoutMs: 3000, lifecycle: { onTimeout: 'pause', autoResume: false } });
    const diskOnly = await Sandbox.create('base', {
      ...opts(),
      timeoutMs: 3000,
      lifecycle: { onTimeout: { action: 'pause', keepMemory: false } },
    });
    await withMemory.commands.run('echo kept > /tmp/mem; sleep 600 >/dev/null 2>&1 &');
    await diskOnly.files.write('/home/user/marker', 'on disk');
    const boot = (await diskOnly.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout;
    for (const s of [withMemory, diskOnly])
      assert.ok(await waitFor(async () => (await s.getInfo()).state === 'paused', 30_000), 'paused at its timeout');
    assert.equal(await withMemory.isRunning(), false);
    await withMemory.connect();
    assert.equal((await withMemory.getInfo()).state, 'running');
    assert.equal((await withMemory.commands.run('cat /tmp/mem; pgrep -x sleep >/dev/null && echo still')).stdout, 'kept\nstill\n');
    await diskOnly.connect();
    assert.equal(await diskOnly.files.read('/home/user/marker'), 'on disk');
    assert.notEqual((await diskOnly.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout, boot, 'booted again from its disk');
    await assert.rejects(
      Sandbox.create('base', { ...opts(), timeoutMs: 3000, lifecycle: { onTimeout: 'pause', autoResume: true } }),
      /autoResume is not supported/,
    );
    // Paused by hand without its memory: kept (an E2B sandbox is otherwise removed when it ends), booted by connect.
    const boot2 = (await diskOnly.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout;
    await diskOnly.pause({ keepMemory: false });
    assert.equal((await diskOnly.getInfo()).state, 'paused');
    await diskOnly.connect();
    assert.notEqual((await diskOnly.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout, boot2);
    assert.equal(await diskOnly.files.read('/home/user/marker'), 'on disk');
    await withMemory.kill();
    await diskOnly.kill();
  });

  it('forks, snapshots (a template for later creates), lists and deletes snapshots, updates the network, refreshes', async () => {
    const src = await Sandbox.create('base', { ...opts(), metadata: { role: 'source' } });
    await src.commands.run('echo before > /home/user/state');
    const copies = await src.fork({ count: 2 });
    assert.equal(copies.length, 2);
    for (const copy of copies) {
      assert.ok(!(copy instanceof Error), String(copy));
      assert.equal((await (copy as Sandbox).files.read('/home/user/state')).trim(), 'before');
    }
    await (copies[0] as Sandbox).files.write('/home/user/state', 'diverged');
    assert.equal((await src.files.read('/home/user/state')).trim(), 'before', 'the source carries on as it was');
    assert.equal(
      (await Sandbox.list({ ...opts(), query: { metadata: { role: 'source' } } }).nextItems()).length,
      3,
      'copies are the key’s',
    );

    const snap = await src.createSnapshot({ name: 'e2b-snap' });
    assert.deepEqual(snap.names, ['e2b-snap']);
    const listed = await Sandbox.listSnapshots({ ...opts(), sandboxId: src.sandboxId }).nextItems();
    assert.deepEqual(
      listed.map((s) => s.snapshotId),
      [snap.snapshotId],
    );
    assert.equal((await Sandbox.listSnapshots({ ...opts(), apiKey: otherKey }).nextItems()).length, 0, 'another key sees none');
    const restored = await Sandbox.create(snap.snapshotId, opts());
    assert.equal((await restored.files.read('/home/user/state')).trim(), 'before');
    await restored.kill();
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, opts()), true);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, opts()), false, 'gone');

    await src.updateNetwork({ allowOut: ['example.com'], allowInternetAccess: false } as never);
    const token = readFileSync(join(server.home.home, 'token'), 'utf8').trim();
    const policy = (await (
      await fetch(`${apiUrl}/v1/sandboxes/${src.sandboxId}/network`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as { defaultAction: string; allow: string[] };
    assert.equal(policy.defaultAction, 'deny');
    assert.deepEqual(policy.allow, ['example.com']);

    const before = (await src.getInfo()).endAt.getTime();
    const r = await fetch(`${apiUrl}/sandboxes/${src.sandboxId}/refreshes`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ duration: 3600 }),
    });
    assert.equal(r.status, 204);
    assert.ok((await src.getInfo()).endAt.getTime() > before, 'refreshed');
    for (const s of [src, ...copies] as Sandbox[]) await s.kill();
  });

  it("mounts vmbox's named volumes as E2B's volumeMounts", async () => {
    const keys = JSON.parse((await runCli(['api-key', 'ls', '--json'], server.home.env)).stdout) as { name: string; id: string }[];
    const keyId = keys.find((k) => k.name === 'agent')?.id as string;
    assert.equal((await runCli(['volume', 'create', 'e2bvol', '--label', `e2b.apiKey=${keyId}`], server.home.env)).status, 0);
    assert.equal((await runCli(['volume', 'create', 'not-mine'], server.home.env)).status, 0);
    await assert.rejects(Sandbox.create('base', { ...opts(), volumeMounts: { '/x': 'not-mine' } }), /volume not-mine is not this key's/);
    const sbx = await Sandbox.create('base', { ...opts(), volumeMounts: { '/data': 'e2bvol' } });
    await sbx.files.write('/data/note.txt', 'kept in the volume');
    assert.deepEqual((await sbx.getInfo()).volumeMounts, [{ name: 'e2bvol', path: '/data' }]);
    await sbx.kill();
    const inspect = JSON.parse((await runCli(['volume', 'inspect', 'e2bvol'], server.home.env)).stdout) as { path: string };
    assert.equal(readFileSync(join(inspect.path, 'note.txt'), 'utf8'), 'kept in the volume');
    await assert.rejects(Sandbox.create('base', { ...opts(), volumeMounts: { '/x': 'missing-vol' } }), /no volume named missing-vol/);
  });

  it('refuses a missing or wrong key, and a timeout ends (removes) the sandbox as E2B’s do', async () => {
    await assert.rejects(Sandbox.create('base', { ...opts(), apiKey: `e2b_${'0'.repeat(40)}` }), AuthenticationError);
    const bare = await fetch(`${apiUrl}/v2/sandboxes`);
    assert.equal(bare.status, 401);
    assert.equal(((await bare.json()) as { code: number }).code, 401);
    // vmbox's own API still wants its bearer token, whatever key is sent.
    assert.equal((await fetch(`${apiUrl}/v1/sandboxes`, { headers: { 'x-api-key': key } })).status, 401);
    // A removed key is refused from then on.
    const gone = await server.key('--name', 'temp');
    assert.equal((await runCli(['api-key', 'rm', 'temp'], server.home.env)).status, 0);
    await assert.rejects(Sandbox.list({ ...opts(), apiKey: gone }).nextItems(), AuthenticationError);
    const sbx = await Sandbox.create('base', { ...opts(), timeoutMs: 2000 });
    assert.ok(await waitFor(async () => (await Sandbox.kill(sbx.sandboxId, opts())) === false, 30_000), 'gone after its timeout');
  });
});
