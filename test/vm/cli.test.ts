import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isolatedHome, waitFor } from '../fixtures/home.js';

const vmbox = fileURLToPath(new URL('../../vmbox', import.meta.url));
// A home of its own: the server these runs start is stopped when the file ends.
const t = isolatedHome();
after(() => t.cleanup());
const run = (args: string[], input?: string) => spawnSync(vmbox, args, { input, encoding: 'utf8', env: t.env });
const qemuRunning = (id: string) => spawnSync('pgrep', ['-f', `qemu-system.*vmbox-${id}`]).status === 0;
const sandboxes = join(t.home, 'sandboxes');
const leftovers = () => (existsSync(sandboxes) ? readdirSync(sandboxes) : []);

describe('vmbox run (the CLI, through the server, end to end)', () => {
  it('prints the guest kernel', () => {
    const r = run(['run', '--', 'uname', '-a']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Linux vmbox-\S+ 6\.1\.\d+ /);
  });

  it('separates stdout and stderr and exits with the command’s code', () => {
    const r = run(['run', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(r.status, 7);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
  });

  it('passes stdin with -i, and env, workdir and user', () => {
    assert.equal(run(['run', '-i', '--', 'cat'], 'hi\n').stdout, 'hi\n');
    const r = run([
      'run',
      '-e',
      'A=1',
      '-e',
      'B=x=y',
      '-w',
      '/tmp',
      '-u',
      'user',
      '--cpus',
      '1',
      '--memory',
      '256',
      '--',
      'sh',
      '-c',
      'echo $A $B; pwd; id -un',
    ]);
    assert.equal(r.stdout, '1 x=y\n/tmp\nuser\n', r.stderr);
  });

  it('exits 128+N when the command dies of signal N, 124 on timeout', () => {
    assert.equal(run(['run', '--', 'sh', '-c', 'kill -TERM $$']).status, 143);
    const slow = run(['run', '--timeout', '1', '--', 'sleep', '30']);
    assert.equal(slow.status, 124);
    assert.match(slow.stderr, /timed out after 1 s/);
  });

  it('answers bad input with one clear line', () => {
    const cases: Array<[string[], RegExp]> = [
      [['run', '--image', 'Nope', '--', 'true'], /unknown image 'Nope'/],
      [['run', '--insecure', '--image', '127.0.0.1:1/none', '--', 'true'], /cannot reach 127.0.0.1:1/],
      [['run', '--cpus', '0', '--', 'true'], /cpus: must be at least 1/],
      [['run', '--cpus', '4096', '--', 'true'], /cpus: must be between 1 and \d+/],
      [['run', '--memory', '32', '--', 'true'], /memoryMib: must be at least 64/],
      [['run', '--memory', '99999999', '--', 'true'], /memoryMib: must be between 64 and \d+ MiB/],
      [['run', '--'], /empty command/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      assert.equal(r.status, 1, args.join(' '));
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
    }
    const missing = run(['run', '--', 'no-such-binary']);
    assert.equal(missing.status, 127);
    assert.match(missing.stderr, /no-such-binary: command not found/);
  });

  it('reports QEMU missing clearly and leaves nothing behind', async () => {
    // The server boots the VMs, so it is the one that must lack QEMU: a fresh home, a fresh server.
    const other = isolatedHome();
    try {
      const r = spawnSync(vmbox, ['run', '--', 'true'], { encoding: 'utf8', env: { ...other.env, VMBOX_QEMU: '/nonexistent/qemu' } });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /started the vmbox server in the background/);
      assert.match(r.stderr, /not installed/);
      assert.deepEqual(readdirSync(join(other.home, 'sandboxes')), []);
    } finally {
      await other.cleanup();
    }
  });

  it('cleans up everything on Ctrl-C', async () => {
    const before = leftovers();
    const child = spawn(vmbox, ['run', '--', 'sh', '-c', 'echo started; sleep 300'], { stdio: ['ignore', 'pipe', 'pipe'], env: t.env });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('started') && resolve()));
    const [id] = leftovers().filter((d) => !before.includes(d));
    assert.ok(id, 'the running sandbox has a directory');
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(code, 130);
    assert.ok(await waitFor(() => !leftovers().includes(id)), 'the server removed the sandbox');
    assert.ok(await waitFor(() => !qemuRunning(id)), 'no QEMU left running');
  });

  it('takes its sandbox down with it when killed outright', async () => {
    const before = leftovers();
    const child = spawn(vmbox, ['run', '--', 'sh', '-c', 'echo started; sleep 300'], { stdio: ['ignore', 'pipe', 'pipe'], env: t.env });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('started') && resolve()));
    const [id] = leftovers().filter((d) => !before.includes(d));
    assert.ok(id);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(await waitFor(() => !qemuRunning(id)), 'the server stopped the VM when its client vanished');
    assert.ok(await waitFor(() => !leftovers().includes(id)), 'and removed the sandbox');
  });

  it('takes its sandbox down when killed mid-boot, before the command runs', async () => {
    const before = leftovers();
    const child = spawn(vmbox, ['run', '--', 'true'], { stdio: 'ignore', env: t.env });
    assert.ok(await waitFor(() => leftovers().some((d) => !before.includes(d)), 30_000), 'the sandbox is being made');
    const [id] = leftovers().filter((d) => !before.includes(d));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(id);
    assert.ok(await waitFor(() => !leftovers().includes(id), 20_000), 'the server removed the half-made sandbox');
    assert.ok(await waitFor(() => !qemuRunning(id)), 'and its VM');
  });

  it('a run’s sandbox goes with its connection when the server restarts under it', async () => {
    const before = leftovers();
    const child = spawn(vmbox, ['run', '--', 'sh', '-c', 'echo started; sleep 300'], { stdio: ['ignore', 'pipe', 'pipe'], env: t.env });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('started') && resolve()));
    const [id] = leftovers().filter((d) => !before.includes(d));
    assert.ok(id);
    const server = t.serverPid();
    assert.ok(server);
    process.kill(server, 'SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The next server finds a sandbox whose owner (the connection) is gone: it removes it rather than adopt it.
    assert.equal(run(['ls', '--json']).status, 0);
    assert.ok(await waitFor(() => !leftovers().includes(id), 20_000), 'the restarted server removed it');
    assert.ok(await waitFor(() => !qemuRunning(id)), 'and its VM');
  });

  it('doctor reports the accelerator, QEMU and caches', () => {
    const r = run(['doctor']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^qemu\s+QEMU emulator version/m);
    assert.match(r.stdout, /^accelerator\s+(kvm|tcg|hvf): /m);
    assert.match(r.stdout, /^kernel\s+built: /m);
  });
});
