import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { DescService } from '@bufbuild/protobuf';
import { Code, type ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import {
  AuthenticationError,
  CommandExitError,
  type CommandHandle,
  FileNotFoundError,
  FilesystemEventType,
  NotEnoughSpaceError,
  NotFoundError,
  Sandbox,
  TimeoutError,
} from 'e2b';
import { EventType, Filesystem } from '../../src/e2b/gen/filesystem/filesystem_pb.js';
import { Process } from '../../src/e2b/gen/process/process_pb.js';
import { runCli } from '../fixtures/cli.js';
import { type E2bServer, startE2bServer } from '../fixtures/e2b-server.js';
import { waitFor } from '../fixtures/home.js';

/*
 * E2B's official JS SDK, unchanged, running commands, terminals and files in a
 * vmbox sandbox through vmbox's envd (src/e2b/envd/), on E2B's `base`
 * template (vmbox's e2b-base image).
 */
let server: E2bServer;
let sbx: Sandbox;
let apiKey: string;

before(async () => {
  server = await startE2bServer();
  apiKey = await server.key('--name', 'envd', '--admin');
  // Made by vmbox with two capabilities E2B's default leaves out — SYS_PTRACE, so a test can count the
  // agent's descriptors, and SYS_ADMIN, so one can mount a small tmpfs — then reached through E2B's SDK.
  const made = await runCli(['create', '--image', 'e2b-base', '--cap-add', 'SYS_PTRACE', '--cap-add', 'SYS_ADMIN'], server.home.env);
  assert.equal(made.status, 0, made.stderr);
  sbx = await Sandbox.connect(made.stdout.trim(), { apiKey, apiUrl: server.url, sandboxUrl: server.url, requestTimeoutMs: 120_000 });
});

after(async () => {
  await sbx?.kill().catch(() => {});
  await server?.stop();
});

const rootCount = async (cmd: string) => Number((await sbx.commands.run(cmd, { user: 'root' })).stdout.trim());

describe("E2B's SDK: commands", () => {
  it('runs through bash -l as user in its home, with envs, cwd, stderr and exit codes', async () => {
    const r = await sbx.commands.run('echo "$FOO"; whoami; pwd; echo oops >&2', { envs: { FOO: 'bar baz' } });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'bar baz\nuser\n/home/user\n');
    assert.equal(r.stderr, 'oops\n');
    assert.equal((await sbx.commands.run('echo "[$FOO]"')).stdout, '[]\n', 'envs do not outlive their command');
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n');
    assert.equal((await sbx.commands.run('whoami', { user: 'root' })).stdout, 'root\n');
    assert.equal((await sbx.commands.run('python3 -c "print(6*7)"')).stdout, '42\n');
    assert.equal((await sbx.commands.run('sudo -n echo "$FOO"', { envs: { FOO: 'x' } })).exitCode, 0);

    const failed = await sbx.commands.run('echo out; echo err >&2; exit 3').catch((e: unknown) => e);
    assert.ok(failed instanceof CommandExitError, `a non-zero exit is CommandExitError, got ${failed}`);
    assert.equal(failed.exitCode, 3);
    assert.equal(failed.stdout, 'out\n');
    assert.equal(failed.stderr, 'err\n');
  });

  it('streams output as it comes (onStdout), and a timeout kills the command with TimeoutError', async () => {
    const seen: string[] = [];
    const at: number[] = [];
    await sbx.commands.run('for i in 1 2 3; do echo $i; sleep 0.3; done', {
      onStdout: (d) => {
        seen.push(d);
        at.push(Date.now());
      },
    });
    assert.equal(seen.join(''), '1\n2\n3\n');
    assert.ok(seen.length >= 2 && (at.at(-1) as number) - (at[0] as number) >= 400, 'chunks arrived apart, not at the end');

    const started = Date.now();
    await assert.rejects(sbx.commands.run('sleep 30; touch /tmp/not-killed', { timeoutMs: 1500 }), TimeoutError);
    assert.ok(Date.now() - started < 15_000);
    await new Promise((r) => setTimeout(r, 500));
    const left = await sbx.commands.run('pgrep -x sleep || true; test -e /tmp/not-killed && echo survived || true');
    assert.equal(left.stdout, '', 'the command was killed in the guest, not only its stream');
  });

  it('runs in the background: the stream can go, connect, stdin, closeStdin, list and kill work by pid', async () => {
    const h = await sbx.commands.run('cat', { background: true, stdin: true });
    assert.ok(h.pid > 1);
    assert.equal((await sbx.commands.run(`kill -0 ${h.pid} && echo alive`)).stdout, 'alive\n', 'the pid is the guest pid');
    await sbx.commands.sendStdin(h.pid, 'hello');
    await h.disconnect();
    // Connect again from another client: input goes on, output comes to it.
    const out: string[] = [];
    const again = await sbx.commands.connect(h.pid, { onStdout: (d) => void out.push(d) });
    assert.equal(again.pid, h.pid);
    await sbx.commands.sendStdin(h.pid, ' world');
    assert.ok(await waitFor(async () => out.join('').includes(' world'), 10_000), 'output after connect reaches the new client');
    const listed = await sbx.commands.list();
    const mine = listed.find((p) => p.pid === h.pid);
    assert.equal(mine?.cmd, '/bin/bash');
    assert.deepEqual(mine?.args, ['-l', '-c', 'cat']);
    await sbx.commands.closeStdin(h.pid);
    const r = await again.wait();
    assert.equal(r.exitCode, 0);

    const sleeper = await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 });
    assert.equal(await sbx.commands.kill(sleeper.pid), true);
    await assert.rejects(sleeper.wait(), CommandExitError);
    assert.notEqual((await sbx.commands.run(`kill -0 ${sleeper.pid} 2>/dev/null; echo $?`)).stdout, '0\n', 'killed');
    assert.equal(await sbx.commands.kill(999_999), false, 'an unknown pid is false');
    await assert.rejects(sbx.commands.connect(999_999), NotFoundError);
  });

  it('a command cut off by its sandbox being killed says so, as E2B has it', async () => {
    const doomed = await Sandbox.create({ apiKey, apiUrl: server.url, sandboxUrl: server.url, requestTimeoutMs: 120_000 });
    const running = doomed.commands.run('sleep 60').catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 1500));
    await doomed.kill();
    const err = await running;
    assert.ok(err instanceof TimeoutError, `TimeoutError, got ${err}`);
    assert.match((err as Error).message, /killed or reached its end of life/);
  });

  it('keeps a command running when its client goes away mid-stream', async () => {
    const ac = new AbortController();
    const h = await sbx.commands.run('sleep 0.5; echo done > /tmp/finished', { background: true, signal: ac.signal });
    ac.abort();
    await assert.rejects(h.wait());
    assert.ok(await waitFor(async () => (await sbx.commands.run('cat /tmp/finished || true')).stdout === 'done\n', 15_000));
  });
});

describe("E2B's SDK: terminals", () => {
  it('creates a PTY, takes input, resizes, reconnects and kills', async () => {
    let data = '';
    const dec = new TextDecoder();
    const onData = (d: Uint8Array) => {
      data += dec.decode(d);
    };
    const pty: CommandHandle = await sbx.pty.create({ cols: 80, rows: 24, onData, envs: { ABC: '123' } });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo "v=$ABC"; tput cols\n'));
    assert.ok(await waitFor(async () => /v=123/.test(data) && /\b80\b/.test(data), 20_000), `echo and tput: ${data}`);
    await sbx.pty.resize(pty.pid, { cols: 100, rows: 30 });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('tput cols\n'));
    assert.ok(await waitFor(async () => /\b100\b/.test(data), 20_000), `resized: ${data}`);

    await pty.disconnect();
    data = '';
    const back = await sbx.pty.connect(pty.pid, { onData });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo again-$((40+2))\nexit\n'));
    const r = await back.wait();
    assert.equal(r.exitCode, 0);
    assert.match(data, /again-42/);

    const other = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} });
    assert.equal(await sbx.pty.kill(other.pid), true);
    assert.equal(await sbx.pty.kill(999_999), false);
  });
});

describe("E2B's SDK: files", () => {
  it('writes and reads text, bytes and 10 MiB, relative paths under the home, owned by the user', async () => {
    const info = await sbx.files.write('notes/a.txt', 'hello');
    assert.equal(info.path, '/home/user/notes/a.txt');
    assert.equal(await sbx.files.read('/home/user/notes/a.txt'), 'hello');
    assert.equal((await sbx.commands.run('stat -c "%U:%G %a" notes notes/a.txt')).stdout, 'user:user 755\nuser:user 644\n');

    const bytes = randomBytes(10 * 1024 * 1024);
    await sbx.files.write('/tmp/big.bin', new Blob([bytes]));
    const back = await sbx.files.read('/tmp/big.bin', { format: 'bytes' });
    assert.ok(Buffer.from(back).equals(bytes), '10 MiB came back the same');
    // Streamed both ways (octet-stream upload, envd 0.5.7), gzip on the way.
    const stream = new Blob([bytes.subarray(0, 300_000)]).stream();
    await sbx.files.write('/tmp/streamed.bin', stream, { gzip: true });
    const streamed = Buffer.from(await sbx.files.read('/tmp/streamed.bin', { format: 'bytes', gzip: true }));
    assert.ok(streamed.equals(bytes.subarray(0, 300_000)));
    assert.equal(await sbx.files.read('/tmp/empty-file').catch((e) => e.constructor.name), 'FileNotFoundError');
    await sbx.files.write('/tmp/empty-file', '');
    assert.equal(await sbx.files.read('/tmp/empty-file'), '');

    // Several at once (one multipart form): each part's name is its path, parents made, as the user.
    const many = await sbx.files.write([
      { path: '/0/multi/a.txt', data: 'A' },
      { path: 'multi/b.txt', data: new Blob(['B']) },
    ]);
    assert.deepEqual(
      many.map((f) => f.path),
      ['/0/multi/a.txt', '/home/user/multi/b.txt'],
    );
    assert.equal((await sbx.commands.run('cat /0/multi/a.txt ~/multi/b.txt; stat -c %U /0 /0/multi/a.txt')).stdout, 'ABuser\nuser\n');
  });

  it('lists (depth), tells existence and info, makes dirs, renames and removes', async () => {
    await sbx.commands.run('mkdir -p ~/t/d1/d2 && echo 1234 > ~/t/f.txt && ln -s f.txt ~/t/link && chmod 4755 ~/t/d1');
    const one = await sbx.files.list('t');
    assert.deepEqual(
      one.map((e) => e.name),
      ['d1', 'f.txt', 'link'],
    );
    const deep = await sbx.files.list('/home/user/t', { depth: 3 });
    assert.deepEqual(
      deep.map((e) => e.path),
      ['/home/user/t/d1', '/home/user/t/d1/d2', '/home/user/t/f.txt', '/home/user/t/link'],
    );
    const f = await sbx.files.getInfo('t/f.txt');
    assert.equal(f.type, 'file');
    assert.equal(f.size, 5);
    assert.equal(f.mode, 0o644);
    assert.equal(f.permissions, '-rw-r--r--');
    assert.equal(f.owner, 'user');
    assert.equal(f.group, 'user');
    assert.ok(Math.abs((f.modifiedTime?.getTime() ?? 0) - Date.now()) < 120_000);
    assert.equal(f.symlinkTarget, undefined);
    const link = await sbx.files.getInfo('t/link');
    assert.equal(link.symlinkTarget, '/home/user/t/f.txt');
    assert.equal((await sbx.files.getInfo('t/d1')).permissions, 'durwxr-xr-x', "Go's FileMode string, as E2B's envd writes it");

    assert.equal(await sbx.files.exists('t/f.txt'), true);
    assert.equal(await sbx.files.exists('t/nope'), false);
    await assert.rejects(sbx.files.getInfo('t/nope'), FileNotFoundError);
    assert.equal(await sbx.files.makeDir('t/new/deeper'), true);
    assert.equal(await sbx.files.makeDir('t/new/deeper'), false, 'an existing directory is false');
    const moved = await sbx.files.rename('t/f.txt', 't/g.txt');
    assert.equal(moved.path, '/home/user/t/g.txt');
    await assert.rejects(sbx.files.rename('t/f.txt', 't/h.txt'), FileNotFoundError);
    await sbx.files.remove('t');
    assert.equal(await sbx.files.exists('t'), false);
    await sbx.files.remove('t'); // what is not there is removed already
  });

  it('keeps user metadata as E2B does (user.e2b.* attributes): set on write, replaced by the next, shown by getInfo and list', async () => {
    const info = await sbx.files.write('meta.txt', 'x', { metadata: { author: 'mish', purpose: 'upload' } });
    assert.deepEqual(info.metadata, { author: 'mish', purpose: 'upload' });
    assert.deepEqual((await sbx.files.getInfo('meta.txt')).metadata, { author: 'mish', purpose: 'upload' });
    await sbx.files.write('meta.txt', 'y', { metadata: { author: 'other' }, useOctetStream: true });
    assert.deepEqual((await sbx.files.getInfo('meta.txt')).metadata, { author: 'other' }, 'replaced whole');
    await sbx.files.rename('meta.txt', 'meta2.txt');
    const listed = (await sbx.files.list('.')).find((e) => e.name === 'meta2.txt');
    assert.deepEqual(listed?.metadata, { author: 'other' });
    await sbx.commands.run(`python3 -c "import os; os.setxattr('meta2.txt', 'user.e2b.tool', b'python')"`);
    assert.deepEqual((await sbx.files.getInfo('meta2.txt')).metadata, { author: 'other', tool: 'python' });
    await sbx.files.write('meta2.txt', 'z');
    assert.equal((await sbx.files.getInfo('meta2.txt')).metadata, undefined, 'an upload without metadata clears it');
  });

  it('watches a directory (recursive too), names relative to it, and stops cleanly', async () => {
    await sbx.files.makeDir('w');
    await sbx.files.write('w/existing.txt', 'x');
    const inotify = () => rootCount('ls -l /proc/1/fd | grep -c inotify || true');
    const before = await inotify();
    const events: Array<{ name: string; type: string }> = [];
    const h = await sbx.files.watchDir('w', (e) => void events.push({ name: e.name, type: e.type }), { recursive: true });
    await sbx.files.write('w/existing.txt', 'changed');
    await sbx.files.makeDir('w/sub');
    await new Promise((r) => setTimeout(r, 300));
    await sbx.files.write('w/sub/new.txt', 'n');
    const saw = (name: string, type: FilesystemEventType) => events.some((e) => e.name === name && e.type === type);
    assert.ok(
      await waitFor(async () => saw('existing.txt', FilesystemEventType.WRITE) && saw('sub/new.txt', FilesystemEventType.CREATE), 15_000),
      JSON.stringify(events),
    );
    await h.stop();
    assert.ok(await waitFor(async () => (await inotify()) === before, 10_000), 'the guest watch ended with the stream');
    const withEntries: Array<{ name: string; size?: number }> = [];
    const h2 = await sbx.files.watchDir('w', (e) => void withEntries.push({ name: e.name, size: e.entry?.size }), { includeEntry: true });
    await sbx.files.write('w/sized.txt', '12345');
    assert.ok(
      await waitFor(async () => withEntries.some((e) => e.name === 'sized.txt' && e.size === 5), 15_000),
      JSON.stringify(withEntries),
    );
    await h2.stop();
    await assert.rejects(
      sbx.files.watchDir('w/missing', () => {}),
      FileNotFoundError,
    );
    await assert.rejects(sbx.files.watchDir('w/existing.txt', () => {}));
  });

  it('says when the guest disk is full (NotEnoughSpaceError), keeps no partial file, and the sandbox works on', async () => {
    await sbx.commands.run('mkdir -p /tmp/small && mount -t tmpfs -o size=1m tmpfs /tmp/small', { user: 'root' });
    await assert.rejects(sbx.files.write('/tmp/small/too-big.bin', new Blob([randomBytes(4 * 1024 * 1024)])), NotEnoughSpaceError);
    assert.equal(await sbx.files.exists('/tmp/small/too-big.bin'), false, 'a new file is whole or not there');
    assert.equal((await sbx.commands.run('echo fine')).stdout, 'fine\n');
  });

  it('isRunning, and refuses envd requests without the sandbox token', async () => {
    assert.equal(await sbx.isRunning(), true);
    const headers = { 'content-type': 'application/json', 'e2b-sandbox-id': sbx.sandboxId };
    const noToken = await fetch(`${server.url}/filesystem.Filesystem/Stat`, { method: 'POST', headers, body: '{"path":"/"}' });
    assert.equal(noToken.status, 401);
    const wrong = await fetch(`${server.url}/files?path=/etc/hostname`, { headers: { ...headers, 'x-access-token': 'nope' } });
    assert.equal(wrong.status, 401);
    const other = await Sandbox.connect(sbx.sandboxId, {
      apiKey: `e2b_${'1'.repeat(40)}`,
      apiUrl: server.url,
      sandboxUrl: server.url,
    }).catch((e: unknown) => e);
    assert.ok(other instanceof AuthenticationError, `a wrong API key is AuthenticationError, got ${other}`);
  });
});

/*
 * E2B's Python SDK cannot be installed here; what it uses that the JS SDK
 * does not is spoken below through a Connect client generated from the same
 * .proto files (JSON over HTTP/1.1, as E2B's SDKs speak it), together with
 * what a broken or hostile client might send.
 */
describe('envd on the wire', () => {
  let token: string;
  const headers = () => ({ 'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': token });
  const client = <S extends DescService>(service: S) =>
    createClient(
      service,
      createConnectTransport({
        baseUrl: server.url,
        httpVersion: '1.1',
        useBinaryFormat: false,
        interceptors: [
          (next) => async (req) => {
            for (const [k, v] of Object.entries(headers())) req.header.set(k, v);
            return next(req);
          },
        ],
      }),
    );

  before(() => {
    // The token E2B's control plane handed the SDK at create.
    token = (sbx as unknown as { envdAccessToken: string }).envdAccessToken;
    assert.match(token, /^[0-9a-f]{64}$/);
  });

  it('serves the polled watcher (CreateWatcher, GetWatcherEvents, RemoveWatcher) as the Python SDK uses it', async () => {
    const fs = client(Filesystem);
    await sbx.files.makeDir('polled');
    const { watcherId } = await fs.createWatcher({ path: 'polled', recursive: false });
    await sbx.files.write('polled/a.txt', 'a');
    let names: string[] = [];
    assert.ok(
      await waitFor(async () => {
        const { events } = await fs.getWatcherEvents({ watcherId });
        names = names.concat(events.map((e) => `${e.name}:${EventType[e.type]}`));
        return names.includes('a.txt:CREATE');
      }, 10_000),
      names.join(' '),
    );
    await fs.removeWatcher({ watcherId });
    await assert.rejects(fs.getWatcherEvents({ watcherId }), (e: ConnectError) => e.code === Code.NotFound);
  });

  it('takes a form field named file as the file at the URL path (a signed upload URL, as E2B documents it)', async () => {
    const form = new FormData();
    form.append('file', 'file content');
    const r = await fetch(`${server.url}/files?path=hello.txt`, { method: 'POST', headers: headers(), body: form });
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(await r.json(), [{ name: 'hello.txt', type: 'file', path: '/home/user/hello.txt' }]);
    assert.equal(await sbx.files.read('hello.txt'), 'file content');
  });

  it('takes multipart uploads as the Python SDK sends them: one form, each part named by its path', async () => {
    const form = new FormData();
    form.append('file', new Blob(['one']), 'py/one.txt');
    form.append('file', new Blob(['two']), '/tmp/py-two.txt');
    const r = await fetch(`${server.url}/files?username=root`, { method: 'POST', headers: headers(), body: form });
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(await r.json(), [
      { name: 'one.txt', type: 'file', path: '/root/py/one.txt' },
      { name: 'py-two.txt', type: 'file', path: '/tmp/py-two.txt' },
    ]);
    assert.equal(
      (await sbx.commands.run('cat /root/py/one.txt /tmp/py-two.txt; stat -c %U /tmp/py-two.txt', { user: 'root' })).stdout,
      'onetworoot\n',
    );
  });

  it("speaks the Python SDK's dialect: identity encodings, a chunked stream request, a doubled slash", async () => {
    const py = { ...headers(), 'connect-protocol-version': '1', 'content-encoding': 'identity', 'accept-encoding': 'identity' };
    const unary = await fetch(`${server.url}//filesystem.Filesystem/Stat`, {
      method: 'POST',
      headers: { ...py, 'content-type': 'application/json' },
      body: '{"path":"/etc"}',
    });
    assert.equal(unary.status, 200);
    assert.equal(((await unary.json()) as { entry: { type: string } }).entry.type, 'FILE_TYPE_DIRECTORY');
    const msg = Buffer.from(JSON.stringify({ process: { cmd: '/bin/echo', args: ['hi'] } }));
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), msg]);
    envelope.writeUInt32BE(msg.length, 1);
    const stream = await fetch(`${server.url}/process.Process/Start`, {
      method: 'POST',
      duplex: 'half',
      headers: {
        ...headers(),
        'content-type': 'application/connect+json',
        'connect-content-encoding': 'identity',
        'connect-accept-encoding': 'identity',
      },
      body: new ReadableStream({
        start(c) {
          c.enqueue(envelope);
          c.close();
        },
      }),
    } as RequestInit);
    assert.equal(stream.headers.get('content-type'), 'application/connect+json', 'exactly, as the Python SDK compares it');
    const text = Buffer.from(await stream.arrayBuffer()).toString();
    assert.match(text, /"start":\{"pid":\d+\}.*"stdout":"aGkK".*"status":"exit status 0"/s);
  });

  it('starts, streams and lists a process by tag through the generated client', async () => {
    const procs = client(Process);
    const events = procs.start({ process: { cmd: '/bin/sh', args: ['-c', 'echo hi; sleep 1'] }, tag: 'tagged' });
    const seen: string[] = [];
    for await (const m of events) {
      const e = m.event?.event;
      if (e?.case === 'start') {
        const list = await procs.list({});
        assert.equal(list.processes.find((p) => p.pid === e.value.pid)?.tag, 'tagged');
      }
      if (e?.case === 'data' && e.value.output.case === 'stdout') seen.push(Buffer.from(e.value.output.value).toString());
      if (e?.case === 'end') seen.push(`end:${e.value.exitCode}:${e.value.status}`);
    }
    assert.deepEqual(seen, ['hi\n', 'end:0:exit status 0']);
  });

  it('answers malformed messages, unknown RPCs and wrong content types with the right error, and the sandbox runs on', async () => {
    const post = (path: string, body: string, type = 'application/json') =>
      fetch(`${server.url}${path}`, { method: 'POST', headers: { ...headers(), 'content-type': type }, body });
    const malformed = await post('/filesystem.Filesystem/Stat', '{"path": ');
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as { code: string }).code, 'invalid_argument');
    const wrongField = await post('/filesystem.Filesystem/Stat', '{"path": 42}');
    assert.equal(wrongField.status, 400);
    const unknown = await post('/filesystem.Filesystem/Format', '{}');
    assert.equal(unknown.status, 404);
    const wrongType = await post('/filesystem.Filesystem/Stat', 'path=/', 'text/plain');
    assert.equal(wrongType.status, 415);
    // A server stream whose body is not an enveloped message: its first bytes read as a 550 MB length.
    const badStream = await post('/process.Process/Start', '{"process":{"cmd":"true"}}', 'application/connect+json');
    const text = Buffer.from(await badStream.arrayBuffer()).toString();
    assert.match(text, /"code":"resource_exhausted"/);
    // Huge frames are refused before they are read.
    const huge = await post('/filesystem.Filesystem/Stat', JSON.stringify({ path: 'x'.repeat(17 * 1024 * 1024) }));
    assert.ok([400, 413].includes(huge.status) || huge.status >= 400, `a 17 MiB message is refused (${huge.status})`);
    assert.equal((await sbx.commands.run('echo still-here')).stdout, 'still-here\n');
  });

  it('leaves nothing behind when streams are cancelled mid-way (followers, guest watches)', async () => {
    const inotify = () => rootCount('ls -l /proc/1/fd | grep -c inotify || true');
    const before = await inotify();
    const fs = client(Filesystem);
    for (let i = 0; i < 5; i++) {
      const ac = new AbortController();
      const it = fs.watchDir({ path: '/tmp', recursive: true }, { signal: ac.signal })[Symbol.asyncIterator]();
      assert.equal((await it.next()).value?.event.case, 'start');
      ac.abort();
      await it.next().catch(() => {});
    }
    assert.ok(await waitFor(async () => (await inotify()) === before, 10_000), 'every guest watch ended');
    const procs = client(Process);
    const ac = new AbortController();
    const it = procs
      .start({ process: { cmd: '/bin/sh', args: ['-c', 'sleep 2; echo late > /tmp/late'] } }, { signal: ac.signal })
      [Symbol.asyncIterator]();
    const started = (await it.next()).value?.event?.event;
    assert.equal(started?.case, 'start');
    ac.abort();
    await it.next().catch(() => {});
    assert.ok(
      await waitFor(async () => (await sbx.commands.run('cat /tmp/late 2>/dev/null || true')).stdout === 'late\n', 15_000),
      'the process outlived its cancelled stream, as E2B has it',
    );
  });
});
