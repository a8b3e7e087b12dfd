import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Connection } from '../../src/sdk/connection.js';
import { isolatedHome, type TestHome, waitFor } from '../fixtures/home.js';
import { packedProject, packedSdk, packedTarball } from '../fixtures/packed.js';

/**
 * The SDK as a user gets it: `npm pack`ed, installed in a project of its own,
 * driving a real server and real VMs in a home of its own.
 */
type Sdk = Awaited<ReturnType<typeof packedSdk>>;
let sdk: Sdk;
let t: TestHome;
let sbx: Awaited<ReturnType<Sdk['Sandbox']['create']>>;

before(async () => {
  t = isolatedHome();
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
  // The server comes from this checkout (the installed package skipped its native build).
  (await Connection.open()).close();
  sdk = await packedSdk();
  sbx = await sdk.Sandbox.create({ image: 'base', memoryMib: 256, envs: { A: '1' }, timeoutMs: 600_000, metadata: { user: 'u1' } });
});
after(async () => {
  await sbx?.kill().catch(() => {});
  await t.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const serverRss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${t.serverPid()}/status`, 'utf8'))?.[1] ?? 0) * 1024;

describe('the SDK: commands', () => {
  it('runs a command with the sandbox env, streaming each stream in order as it comes', async () => {
    const seen: string[] = [];
    const r = await sbx.commands.run('echo $A; echo err >&2; for i in 1 2 3; do echo line$i; sleep 0.2; done', {
      onStdout: (d) => {
        seen.push(`out:${d}`);
      },
      onStderr: (d) => {
        seen.push(`err:${d}`);
      },
    });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, '1\nline1\nline2\nline3\n');
    assert.equal(r.stderr, 'err\n');
    const outs = seen.filter((s) => s.startsWith('out:')).map((s) => s.slice(4));
    assert.equal(outs.join(''), '1\nline1\nline2\nline3\n');
    assert.ok(seen.length >= 4, `output came in pieces as it was written: ${JSON.stringify(seen)}`);
  });

  it('throws CommandExitError with the result, or returns it when asked', async () => {
    await assert.rejects(sbx.commands.run('echo out; echo bad >&2; exit 4'), (e: InstanceType<Sdk['CommandExitError']>) => {
      assert.ok(e instanceof sdk.CommandExitError);
      // The error is the whole result, under a code of its own.
      assert.equal(e.code, 'commandFailed');
      assert.equal(e.command, 'echo out; echo bad >&2; exit 4');
      assert.equal(e.exitCode, 4);
      assert.equal(e.result.stdout, 'out\n');
      assert.equal(e.stdout, 'out\n');
      assert.equal(e.stderr, 'bad\n');
      assert.ok(e.durationMs >= 0 && e.durationMs === e.result.durationMs);
      return true;
    });
    assert.equal((await sbx.commands.run('exit 3', { throwOnError: false })).exitCode, 3);
    await assert.rejects(sbx.commands.run('sleep 5', { timeoutMs: 300 }), (e: InstanceType<Sdk['CommandExitError']>) => {
      assert.equal(e.code, 'commandTimeout');
      assert.equal(e.result.timedOut, true);
      return true;
    });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    await assert.rejects(sbx.commands.run('sleep 5', { signal: abort.signal }), { code: 'aborted' });
  });

  it('runs in the background: pid, list, stdin, wait, kill; stdin after the end is refused', async () => {
    const h = await sbx.commands.run('read x; echo got $x', { background: true });
    assert.ok(h.pid > 1);
    const listed = await sbx.commands.list();
    assert.ok(listed.some((p) => p.pid === h.pid && p.background && !p.exited));
    await h.sendStdin('hello\n');
    const r = await h.wait();
    assert.equal(r.stdout, 'got hello\n');
    await assert.rejects(h.sendStdin('late'), (e: Error & { code: string }) => {
      assert.ok(e instanceof sdk.InvalidStateError);
      assert.match(e.message, /has exited \(code 0\)/);
      return true;
    });
    const s = await sbx.commands.run('sleep 100', { background: true });
    assert.equal(await sbx.commands.kill(s.pid), true);
    await assert.rejects(s.wait(), (e: InstanceType<Sdk['CommandExitError']>) => e.exitCode === 137);
    assert.equal(await sbx.commands.kill(s.pid), false, 'already gone');
    assert.equal(await sbx.commands.kill(999_999), false);
  });

  it('reattaches to a background command after the client that started it exited', async () => {
    const script = join(packedProject(), 'start-bg.mjs');
    writeFileSync(
      script,
      `import { Sandbox } from 'vmbox';
const sbx = await Sandbox.connect(process.argv[2]);
const h = await sbx.commands.run('echo early; sleep 2; echo late >&2; sleep 0.3; echo last; exit 3', { background: true });
console.log(h.pid);
process.exit(0);
`,
    );
    const child = spawnSync(process.execPath, [script, sbx.sandboxId], { encoding: 'utf8', env: process.env, timeout: 60_000 });
    assert.equal(child.status, 0, child.stderr);
    const pid = Number(child.stdout.trim());
    assert.ok(pid > 1, child.stdout);
    await waitFor(async () => (await sbx.commands.list()).some((p) => p.pid === pid && !p.attached), 10_000);
    const order: string[] = [];
    const h = await sbx.commands.connect(pid, { onStdout: (d) => void order.push(d), onStderr: (d) => void order.push(`E:${d}`) });
    const r = await h.wait({ throwOnError: false });
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdout, 'early\nlast\n', 'its output so far, then the rest');
    assert.equal(r.stderr, 'late\n');
    assert.deepEqual(order.join(''), 'early\nE:late\nlast\n');
    assert.equal(
      (await sbx.commands.list()).some((p) => p.pid === pid),
      false,
      'collected once attached and ended',
    );
  });
});

describe('the SDK: terminals', () => {
  it('creates a terminal, resizes it (stty size sees it), and keeps it when the client disconnects', async () => {
    let out = '';
    const term = await sbx.pty.create({
      cols: 80,
      rows: 24,
      cmd: ['/bin/sh'],
      onData: (b) => {
        out += Buffer.from(b).toString();
      },
    });
    await term.sendInput('stty size\n');
    assert.ok(await waitFor(() => out.includes('24 80')), out);
    await term.resize({ cols: 120, rows: 40 });
    await term.sendInput('stty size; tty\n');
    assert.ok(await waitFor(() => out.includes('40 120') && /\/dev\/pts\/\d+/.test(out)), out);
    await term.sendInput('echo before-$((1+1))\n');
    assert.ok(await waitFor(() => out.includes('before-2')), out);

    term.disconnect();
    await sleep(300);
    const listed = (await sbx.commands.list()).find((p) => p.pid === term.pid);
    assert.ok(listed?.pty && !listed.exited, 'the terminal outlived its client');
    let again = '';
    const back = await sbx.pty.connect(term.pid, {
      onData: (b) => {
        again += Buffer.from(b).toString();
      },
    });
    await back.sendInput('echo still-$((2+3)); exit 9\n');
    const r = await back.wait({ throwOnError: false });
    assert.equal(r.exitCode, 9);
    assert.match(again, /still-5/);

    const killed = await sbx.pty.create({ cols: 80, rows: 24, cmd: ['/bin/sh'] });
    assert.equal(await sbx.pty.kill(killed.pid), true);
  });
});

describe('the SDK: files', () => {
  it('writes and reads text, bytes, streams and several files at once', async () => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    assert.deepEqual(await sbx.files.write('/tmp/a.bin', bytes), { path: '/tmp/a.bin', name: 'a.bin', size: 256 });
    assert.deepEqual(Buffer.from(await sbx.files.read('/tmp/a.bin', { format: 'bytes' })), Buffer.from(bytes));
    await sbx.files.write('/work/deep/t.txt', 'text ✓');
    assert.equal(await sbx.files.read('/work/deep/t.txt'), 'text ✓');
    const web = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(Buffer.from('one,'));
        c.enqueue(Buffer.from('two'));
        c.close();
      },
    });
    await sbx.files.write('/work/s.txt', web, { mode: 0o600 });
    let streamed = '';
    for await (const c of await sbx.files.read('/work/s.txt', { format: 'stream' })) streamed += Buffer.from(c).toString();
    assert.equal(streamed, 'one,two');
    assert.equal((await sbx.files.getInfo('/work/s.txt')).mode, 0o600);
    const many = await sbx.files.write([
      { path: '/work/m/1.txt', data: 'a' },
      { path: '/work/m/2.txt', data: 'bb' },
    ]);
    assert.deepEqual(
      many.map((w) => w.size),
      [1, 2],
    );
    assert.equal(await (await sbx.files.read('/work/m/2.txt', { format: 'blob' })).text(), 'bb');
  });

  it('lists with depth; exists, getInfo, makeDir, rename, remove', async () => {
    await sbx.files.write('/srv/x/y/z.txt', 'z');
    const one = await sbx.files.list('/srv');
    assert.deepEqual(
      one.map((e) => [e.path, e.type]),
      [['/srv/x', 'dir']],
    );
    const deep = await sbx.files.list('/srv', { depth: 3 });
    assert.deepEqual(
      deep.map((e) => e.path),
      ['/srv/x', '/srv/x/y', '/srv/x/y/z.txt'],
    );
    assert.equal(await sbx.files.exists('/srv/x/y/z.txt'), true);
    assert.equal(await sbx.files.exists('/srv/nope'), false);
    const info = await sbx.files.getInfo('/srv/x/y/z.txt');
    assert.equal(info.type, 'file');
    assert.equal(info.size, 1);
    assert.equal(await sbx.files.makeDir('/srv/new/dir'), true);
    assert.equal(await sbx.files.makeDir('/srv/new/dir'), false, 'already there');
    const moved = await sbx.files.rename('/srv/x/y/z.txt', '/srv/new/z.txt');
    assert.equal(moved.path, '/srv/new/z.txt');
    assert.equal(await sbx.files.exists('/srv/x/y/z.txt'), false);
    await sbx.files.remove('/srv/new');
    assert.equal(await sbx.files.exists('/srv/new'), false);
  });

  it('reports bad paths as typed errors that name the path', async () => {
    const cases: [() => Promise<unknown>, string, string, string][] = [
      [() => sbx.files.write('/tmp', 'x'), 'InvalidArgumentError', 'isDirectory', '/tmp'],
      [() => sbx.files.read('/missing'), 'NotFoundError', 'notFound', '/missing'],
      [() => sbx.files.list('/tmp/a.bin'), 'InvalidArgumentError', 'notDirectory', '/tmp/a.bin'],
      [() => sbx.files.rename('/tmp/a.bin', '/no/such/dir/a'), 'NotFoundError', 'notFound', '/no/such/dir/a'],
    ];
    for (const [call, name, code, path] of cases) {
      await assert.rejects(call(), (e: Error & { code: string; path?: string }) => {
        assert.equal(e.name, name);
        assert.equal(e.code, code);
        assert.equal(e.path, path);
        assert.ok(e.message.includes(path), e.message);
        return true;
      });
    }
  });

  it('watches a directory: create, write, remove, rename, in new subdirectories too', async () => {
    await sbx.files.makeDir('/watched');
    const events: { type: string; name: string }[] = [];
    const w = await sbx.files.watchDir('/watched', (e) => void events.push({ type: e.type, name: e.name }), { recursive: true });
    await sbx.files.write('/watched/a.txt', 'a');
    await sbx.files.makeDir('/watched/sub');
    await sleep(200);
    await sbx.files.write('/watched/sub/b.txt', 'b');
    await sbx.files.rename('/watched/a.txt', '/watched/c.txt');
    await sbx.files.remove('/watched/sub/b.txt');
    const want = [
      { type: 'create', name: 'a.txt' },
      { type: 'write', name: 'a.txt' },
      { type: 'create', name: 'sub' },
      { type: 'create', name: 'sub/b.txt' },
      { type: 'rename', name: 'a.txt' },
      { type: 'create', name: 'c.txt' },
      { type: 'remove', name: 'sub/b.txt' },
    ];
    const has = (x: { type: string; name: string }) => events.some((e) => e.type === x.type && e.name === x.name);
    assert.ok(await waitFor(() => want.every(has), 5000), JSON.stringify(events));
    await w.stop();
    await sbx.files.write('/watched/after.txt', 'x');
    await sleep(300);
    assert.ok(!events.some((e) => e.name === 'after.txt'), 'nothing after stop');
    await assert.rejects(
      sbx.files.watchDir('/watched/c.txt', () => {}),
      { code: 'notDirectory' },
    );
  });

  it('moves 1 GiB each way with bounded memory in this process and in the server', async () => {
    const size = 1024 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    async function* gib() {
      for (let i = 0; i < size / chunk.length; i++) yield chunk;
    }
    let peakSelf = 0;
    let peakServer = 0;
    const baseSelf = process.memoryUsage().rss;
    const baseServer = serverRss();
    const sample = setInterval(() => {
      peakSelf = Math.max(peakSelf, process.memoryUsage().rss - baseSelf);
      peakServer = Math.max(peakServer, serverRss() - baseServer);
    }, 50);
    try {
      // /dev/null in the guest: the transfer, not the guest's disk, is what is measured.
      assert.equal((await sbx.files.write('/dev/null', gib())).size, size);
      await sbx.commands.run('truncate -s 1G /tmp/sparse');
      let got = 0;
      for await (const c of await sbx.files.read('/tmp/sparse', { format: 'stream' })) got += c.length;
      assert.equal(got, size);
    } finally {
      clearInterval(sample);
    }
    const mib = (n: number) => `${Math.round(n / 1048576)} MiB`;
    assert.ok(peakSelf < 192 * 1048576, `test process grew by ${mib(peakSelf)}`);
    assert.ok(peakServer < 192 * 1048576, `server grew by ${mib(peakServer)}`);
  });
});

describe('the SDK: sandboxes', () => {
  it('lists by metadata and state, connects by id, sets the timeout, reports info and metrics', async () => {
    const mine = await sdk.Sandbox.list({ query: { metadata: { user: 'u1' }, state: ['running'] } });
    assert.deepEqual(
      mine.map((s) => s.id),
      [sbx.sandboxId],
    );
    assert.deepEqual(await sdk.Sandbox.list({ query: { metadata: { user: 'nobody' } } }), []);
    const again = await sdk.Sandbox.connect(sbx.sandboxId);
    assert.equal((await again.commands.run('echo $A')).stdout, '1\n');
    again.close();
    await sbx.setTimeout(300_000);
    const info = await sbx.getInfo();
    const left = (info.startedAt as number) + (info.spec.maxDurationMs as number) - Date.now();
    assert.ok(left > 290_000 && left <= 300_000, `stops in ${left} ms`);
    assert.ok((await sbx.getMetrics()).latest.memUsedBytes > 0);
    assert.equal(await sbx.isRunning(), true);
    await assert.rejects(sdk.Sandbox.connect('no-such-sandbox'), (e: Error) => e instanceof sdk.SandboxNotFoundError);
  });

  it('removes the sandbox with await using', async () => {
    let id = '';
    {
      await using s = await sdk.Sandbox.create({ image: 'base', memoryMib: 128 });
      id = s.sandboxId;
      assert.equal((await s.commands.run('echo in')).stdout, 'in\n');
    }
    await assert.rejects(sdk.Sandbox.connect(id), { code: 'sandboxNotFound' });
  });
});

describe('the package', () => {
  it('holds the SDK with its types and nothing of the tests', () => {
    const list = spawnSync('tar', ['-tzf', packedTarball()], { encoding: 'utf8' }).stdout.split('\n');
    assert.ok(list.includes('package/dist/index.mjs'));
    assert.ok(list.includes('package/dist/types/index.d.ts'));
    assert.ok(!list.some((f) => f.startsWith('package/test/') || f.startsWith('package/bench/')));
  });

  it('type-checks a consumer against its declarations, and rejects a wrong call', () => {
    const dir = packedProject();
    const tsc = join(fileURLToPath(new URL('../../node_modules/.bin/tsc', import.meta.url)));
    const check = (body: string) => {
      writeFileSync(join(dir, 'main.ts'), `import { Sandbox, CommandExitError, NotFoundError } from 'vmbox';\n${body}\n`);
      const flags = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022'];
      return spawnSync(tsc, [...flags, '--lib', 'es2023,esnext.disposable,dom', '--types', 'node', '--typeRoots', typeRoots, 'main.ts'], {
        cwd: dir,
        encoding: 'utf8',
      });
    };
    const typeRoots = fileURLToPath(new URL('../../node_modules/@types', import.meta.url));
    const good = check(`
await using sbx = await Sandbox.create({ image: 'base', envs: { A: '1' }, timeoutMs: 60_000, metadata: { user: 'u1' } });
const r = await sbx.commands.run('echo $A', { onStdout: (d: string) => void d });
const code: number = r.exitCode;
const h = await sbx.commands.run('sleep 1', { background: true });
const pid: number = h.pid;
const text: string = await sbx.files.read('/etc/hostname');
const bytes: Uint8Array = await sbx.files.read('/etc/hostname', { format: 'bytes' });
void [code, pid, text, bytes, CommandExitError, NotFoundError];`);
    assert.equal(good.status, 0, good.stdout + good.stderr);
    const bad = check(`const sbx = await Sandbox.create({}); await sbx.commands.run(42);`);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stdout, /main\.ts\(\d+,\d+\): error TS2769|not assignable/);
  });
});
