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
