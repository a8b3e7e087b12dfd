import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import type { VmboxError } from '../../src/errors.js';
import { Connection } from '../../src/sdk/connection.js';
import { Sandbox, type SandboxInfo } from '../../src/sdk/sandbox.js';
import { isAlive } from '../../src/util/process.js';
import { isolatedHome, type TestHome, waitFor } from '../fixtures/home.js';

/** A server of its own, in a home of its own; started by the SDK like any client would. */
let t: TestHome;
before(() => {
  t = isolatedHome();
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
});
after(async () => {
  for (const s of await Sandbox.list().catch(() => [])) await (await Sandbox.connect(s.id)).kill().catch(() => {});
  await t.cleanup();
});

const small = { memoryMib: 128 };
const sandboxDirs = () => (existsSync(join(t.home, 'sandboxes')) ? readdirSync(join(t.home, 'sandboxes')) : []);
const qemuOf = (id: string) => spawnSync('pgrep', ['-f', `qemu-system.*vmbox-${id}`], { encoding: 'utf8' }).stdout.trim();

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: VmboxError) => {
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('the vmbox server, through the SDK', () => {
  it('starts on demand, and keeps a file across stop and start', async () => {
    let started: { pid: number } | undefined;
    const sbx = await Sandbox.create({
      ...small,
      name: 'keep',
      labels: { team: 'ml' },
      onServerStart: (i) => {
        started = i;
      },
    });
    assert.ok(started && isAlive(started.pid), 'this call started the server');
    assert.equal(sbx.name, 'keep');
    await sbx.commands.run('echo kept > /root/f');
    assert.equal((await sbx.stop()).state, 'stopped');
    assert.equal(qemuOf(sbx.sandboxId), '', 'no VM while stopped');
    await rejectsWith(sbx.commands.run('true'), 'invalidState', /it is stopped/);
    assert.equal((await sbx.start()).state, 'running');
    assert.equal((await sbx.commands.run('cat /root/f')).stdout, 'kept\n');
    const info = await sbx.getInfo();
    assert.deepEqual(info.labels, { team: 'ml' });
    assert.ok(info.events.some((e) => /stopped: stopped by request/.test(e.message)));
    await sbx.kill();
    await rejectsWith(Sandbox.connect('keep'), 'sandboxNotFound');
    assert.deepEqual(sandboxDirs(), []);
  });

  it('answers wrong states, duplicate names and unknown sandboxes with their codes', async () => {
    const sbx = await Sandbox.create({ ...small, name: 'dup' });
    try {
      await rejectsWith(Sandbox.create({ ...small, name: 'dup' }), 'sandboxAlreadyExists', /dup already exists/);
      await rejectsWith(sbx.start(), 'invalidState', /it is running/);
      const conn = await Connection.open();
      await rejectsWith(conn.request('DELETE', '/v1/sandboxes/dup'), 'invalidState', /stop it first/);
      await rejectsWith(conn.request('GET', '/v1/sandboxes/nope'), 'sandboxNotFound');
      conn.close();
      const r = await sbx.commands.run('exit 3', { throwOnError: false });
      assert.equal(r.exitCode, 3);
      await assert.rejects(sbx.commands.run('echo bad >&2; exit 4'), (e: Error & { exitCode: number; stderr: string }) => {
        assert.equal(e.name, 'CommandExitError');
        assert.equal(e.exitCode, 4);
        assert.equal(e.stderr, 'bad\n');
        return true;
      });
    } finally {
      await sbx.kill();
    }
  });

  it('lets one of two creates of one name win', async () => {
    const results = await Promise.allSettled([Sandbox.create({ ...small, name: 'race' }), Sandbox.create({ ...small, name: 'race' })]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(won.length, 1);
    assert.equal(lost[0]?.reason.code, 'sandboxAlreadyExists');
    await (won[0] as PromiseFulfilledResult<Sandbox>).value.kill();
  });

  it('rejects malformed JSON and unknown fields with the field’s path, and documents itself', async () => {
    const raw = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; body: { code: string; message: string } }>((resolve, reject) => {
        const req = http.request(
          { socketPath: join(t.home, 'vmbox.sock'), method, path, headers: { 'content-type': 'application/json' } },
          (res) => {
            let text = '';
            res.on('data', (c) => {
              text += c;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const bad = await raw('POST', '/v1/sandboxes', '{"image": "base",');
    assert.equal(bad.status, 400);
    const unknown = await raw('POST', '/v1/sandboxes', JSON.stringify({ image: 'base', cpu: 2 }));
    assert.equal(unknown.status, 400);
    // The runtime's check, the same code and words as a create through the runtime itself gets.
    assert.equal(unknown.body.code, 'invalidSpec');
    assert.match(unknown.body.message, /^cpu: is not a known field/);
    assert.equal((unknown.body as { field?: string }).field, 'cpu');
    const zero = await raw('POST', '/v1/sandboxes', JSON.stringify({ cpus: 0 }));
    assert.equal(zero.body.code, 'invalidSpec');
    assert.match(zero.body.message, /^cpus: must be at least 1/);
    const nested = await raw('POST', '/v1/sandboxes', JSON.stringify({ patches: [{ op: 'mkdir', path: '/x', mod: 1 }] }));
    assert.equal(nested.status, 400);
    const spec = await raw('POST', '/v1/sandboxes', JSON.stringify({ cpus: 4096 }));
    assert.equal(spec.status, 400);
    assert.match(spec.body.message, /cpus: must be between 1 and/);
    const doc = (await raw('GET', '/openapi.json')) as unknown as { status: number; body: { paths: Record<string, unknown> } };
    assert.equal(doc.status, 200);
    assert.ok(doc.body.paths['/v1/sandboxes'] && doc.body.paths['/v1/sandboxes/{ref}/logs']);
  });

  it('stops sandboxes by their policies, saying why; removes ephemeral ones', async () => {
    const capped = await Sandbox.create({ ...small, name: 'capped', maxDurationMs: 2000 });
    const gone = await Sandbox.create({ ...small, name: 'gone', ephemeral: true, maxDurationMs: 1500 });
    // Made last, so a slow boot of the others does not idle it out before its command.
    const idle = await Sandbox.create({ ...small, name: 'idle', idleTimeoutMs: 2500 });
    // A command running keeps a sandbox busy past its idle timeout.
    await idle.commands.run('sleep 3');
    // Listing is not a call on a sandbox: polling with it does not keep one busy (getInfo would).
    const state = async (s: Sandbox) => (await Sandbox.list()).find((i) => i.id === s.sandboxId)?.state;
    assert.ok(await waitFor(async () => (await state(capped)) === 'stopped', 20_000), 'max duration enforced');
    assert.match((await capped.getInfo()).reason ?? '', /maximum duration of 2s/);
    assert.ok(await waitFor(async () => !(await Sandbox.list()).some((s) => s.name === 'gone'), 20_000), 'the ephemeral one is removed');
    assert.ok(!sandboxDirs().includes(gone.sandboxId), 'with its directory');
    assert.ok(await waitFor(async () => (await state(idle)) === 'stopped', 20_000), 'idle timeout enforced');
    const info = await idle.getInfo();
    assert.match(info.reason ?? '', /idle for 2\.5s|idle for 2500ms/);
    const system = [];
    for await (const e of idle.logs({ sources: ['system'] })) system.push(e.text);
    assert.ok(
      system.some((l) => /policy: idle/.test(l)),
      system.join('\n'),
    );
    await capped.kill();
    await idle.kill();
  });

  it('keeps logs by source, follows them, and reports stats', async () => {
    const sbx = await Sandbox.create({ ...small, name: 'logs' });
    try {
      await sbx.commands.run('echo one; echo two >&2');
      const stored = [];
      for await (const e of sbx.logs()) stored.push(`${e.source}:${e.text}`);
      assert.deepEqual(stored.sort(), ['stderr:two\n', 'stdout:one\n']);
      const system = [];
      for await (const e of sbx.logs({ sources: ['system'] })) system.push(e.text);
      assert.match(system.join('\n'), /created from image base/);

      const abort = new AbortController();
      const seen: string[] = [];
      const following = (async () => {
        for await (const e of sbx.logs({ follow: true, sinceMs: Date.now(), signal: abort.signal })) {
          seen.push(e.text);
          if (e.text.includes('three')) abort.abort();
        }
      })();
      await new Promise((r) => setTimeout(r, 200));
      await sbx.commands.run('echo three');
      await following;
      assert.deepEqual(seen, ['three\n']);

      const m = await sbx.getMetrics();
      assert.ok(m.latest.memTotalBytes > 64 * 1024 * 1024, `guest memory ${m.latest.memTotalBytes}`);
      assert.ok(m.latest.memUsedBytes > 0);
      assert.ok(m.latest.diskTotalBytes > 0 && m.latest.processes > 0);
      assert.ok(m.latest.hostRssBytes > 10 * 1024 * 1024);
    } finally {
      await sbx.kill();
    }
  });

  it('notices a QEMU killed under it and reports it', async () => {
    const sbx = await Sandbox.create({ ...small, name: 'victim' });
    const pid = Number(qemuOf(sbx.sandboxId));
    assert.ok(pid > 0);
    process.kill(pid, 'SIGKILL');
    assert.ok(await waitFor(async () => (await sbx.getInfo()).state === 'failed'));
    const info = await sbx.getInfo();
    assert.match(info.reason ?? '', /VM was killed by SIGKILL/);
    await rejectsWith(sbx.commands.run('true'), 'invalidState', /it is failed/);
    assert.equal((await sbx.start()).state, 'running', 'a failed sandbox starts again from its disk');
    await sbx.kill();
  });

  it('survives kill -9 of the server: reattaches running sandboxes, undoes a half-made one', async () => {
    const sbx = await Sandbox.create({ ...small, name: 'survivor' });
    await sbx.commands.run('echo before > /root/f');
    // A create in flight when the server dies.
    const creating = Sandbox.create({ ...small, name: 'half' }).catch((e: Error) => e);
    assert.ok(await waitFor(() => sandboxDirs().length === 2, 20_000), 'the second sandbox is being made');
    const server = t.serverPid();
    assert.ok(server);
    process.kill(server, 'SIGKILL');
    assert.ok((await creating) instanceof Error, 'the create in flight fails');
    const halfDir = sandboxDirs().find((d) => d !== sbx.sandboxId);

    const again = await Sandbox.connect('survivor'); // starts a new server, which reattaches
    assert.notEqual(t.serverPid(), server);
    assert.equal(again.sandboxId, sbx.sandboxId);
    assert.equal((await again.commands.run('cat /root/f')).stdout, 'before\n');
    assert.ok(!(await Sandbox.list()).some((s) => s.name === 'half'), 'the half-made sandbox is gone');
    assert.ok(halfDir && !sandboxDirs().includes(halfDir), 'and its directory');
    assert.ok(await waitFor(() => !halfDir || qemuOf(halfDir) === ''), 'and its VM');
    const system = [];
    for await (const e of again.logs({ sources: ['system'] })) system.push(e.text);
    assert.match(system.join('\n'), /reattached to the running VM/);
    await again.kill();
  });

  it('creates 20 sandboxes at once, all up, all removed', async () => {
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => Sandbox.create({ ...small, name: `many-${i}` })));
    const out = await Promise.all(all.map((s) => s.commands.run('hostname')));
    assert.equal(new Set(out.map((r) => r.stdout)).size, 20);
    const running = await Sandbox.list({ query: { state: ['running'] } });
    assert.equal(running.filter((s: SandboxInfo) => s.name.startsWith('many-')).length, 20);
    await Promise.all(all.map((s) => s.kill()));
    assert.deepEqual(sandboxDirs(), []);
    assert.equal(spawnSync('pgrep', ['-f', `qemu-system.*${t.home}`]).status, 1, 'no QEMU left');
  });
});

describe('a full disk under $VMBOX_HOME', () => {
  it('fails a create with a clear error and leaves nothing half-made', async (ctx) => {
    const dir = join(t.home, 'sandboxes');
    mkdirSync(dir, { recursive: true });
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]).status !== 0) {
      ctx.skip('cannot mount a tmpfs here (needs root)');
      return;
    }
    try {
      try {
        writeFileSync(join(dir, 'filler'), Buffer.alloc(1024 * 1024));
      } catch {} // ENOSPC: the disk is full
      await rejectsWith(Sandbox.create({ ...small, name: 'full' }), 'noSpace', /no space left under .*sandboxes: free some disk space/);
      assert.deepEqual(readdirSync(dir), ['filler'], 'no sandbox directory left');
      assert.ok(!(await Sandbox.list()).some((s) => s.name === 'full'), 'no sandbox recorded');
    } finally {
      spawnSync('umount', [dir]);
    }
    const after = await Sandbox.create({ ...small, name: 'after-full' });
    await after.kill();
  });
});

describe('the API on TCP', () => {
  it('requires the bearer token and tells nothing without it', async () => {
    const other = isolatedHome();
    const child = spawn(process.execPath, [join(import.meta.dirname, '../../dist/vmbox.mjs'), 'serve', '--listen', '127.0.0.1:0'], {
      env: other.env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      const address = await new Promise<string>((resolve, reject) => {
        let err = '';
        child.stderr.on('data', (d: Buffer) => {
          err += d;
          const m = /and (\S+:\d+) \(token required\)/.exec(err);
          if (m?.[1]) resolve(m[1]);
        });
        child.once('exit', () => reject(new Error(`server exited: ${err}`)));
      });
      const token = readFileSync(join(other.home, 'token'), 'utf8').trim();
      const url = `http://${address}`;
      for (const bad of [undefined, 'wrong']) {
        const res = await fetch(`${url}/v1/sandboxes`, { headers: bad ? { authorization: `Bearer ${bad}` } : {} });
        assert.equal(res.status, 401);
        const body = (await res.json()) as { code: string; message: string };
        assert.equal(body.code, 'unauthorized');
        assert.doesNotMatch(JSON.stringify(body), /sandbox[^e]/i);
      }
      assert.deepEqual(await Sandbox.list({ url, token }), []);
      await rejectsWith(Sandbox.list({ url, token: 'nope' }), 'unauthorized');
      // The exec WebSocket is behind the same token.
      const sbx = await Sandbox.create({ ...small, url, token });
      assert.equal((await sbx.commands.run('echo over tcp')).stdout, 'over tcp\n');
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(`ws://${address}/v1/sandboxes/${sbx.sandboxId}/exec`);
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => resolve(101));
        ws.on('error', () => {});
      });
      assert.equal(status, 401, 'no exec socket without the token');
      await sbx.kill();
      // A host path means nothing to a server on another machine: over TCP it is refused, content travels instead.
      const copy = { ...small, url, token, patches: [{ op: 'copy' as const, from: '/etc/hostname', path: '/tmp/h' }] };
      await rejectsWith(Sandbox.create(copy), 'invalidSpec', /patches\.0: op copy reads a host path.*op write/);
      const sent = await Sandbox.create({ ...small, url, token, patches: [{ op: 'write', path: '/tmp/h', text: 'sent\n' }] });
      assert.equal((await sent.commands.run('cat /tmp/h')).stdout, 'sent\n');
      await sent.kill();
      assert.deepEqual(await Sandbox.list({ url, token }), [], 'the refused create left nothing');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await other.cleanup();
    }
  });
});
