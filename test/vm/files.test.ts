import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { sharedSandbox } from './helpers.js';

async function readAll(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

describe('files in a real microVM', () => {
  // SYS_ADMIN: a test mounts a read-only tmpfs in the guest.
  const sbx = sharedSandbox({ capAdd: ['SYS_ADMIN'] });

  it('round-trips every byte value', async () => {
    const data = Buffer.alloc(256 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = i % 256;
    const { size } = await sbx().machine().agent.writeFile('/tmp/bytes.bin', data);
    assert.equal(size, data.length);
    assert.deepEqual(await readAll(sbx().machine().agent.readFile('/tmp/bytes.bin')), data);
    // The guest sees the same bytes.
    const sum = await sbx().run(['sha256sum', '/tmp/bytes.bin']);
    assert.equal(sum.stdout.split(' ')[0], createHash('sha256').update(data).digest('hex'));
  });

  it('moves a 64 MiB file both ways intact', async () => {
    const data = randomBytes(64 * 1024 * 1024);
    await sbx().machine().agent.writeFile('/tmp/big.bin', data);
    const back = await readAll(sbx().machine().agent.readFile('/tmp/big.bin'));
    assert.equal(back.length, data.length);
    assert.ok(back.equals(data));
  });

  it('moves several files at once while commands run, each intact', async () => {
    const files = Array.from({ length: 4 }, (_, i) => ({ path: `/tmp/par-${i}.bin`, data: randomBytes(4 * 1024 * 1024 + i) }));
    const busy = sbx().run(['sh', '-c', 'i=0; while [ $i -lt 200 ]; do echo $i; i=$((i+1)); done']);
    await Promise.all(files.map((f) => sbx().machine().agent.writeFile(f.path, f.data)));
    const back = await Promise.all(files.map((f) => readAll(sbx().machine().agent.readFile(f.path))));
    for (const [i, b] of back.entries()) assert.ok(b.equals(files[i]?.data as Buffer), `file ${i}`);
    assert.equal((await busy).stdout.split('\n').length, 201);
  });

  it('streams a write from an async iterable, with mode and mkdirs', async () => {
    async function* gen() {
      for (let i = 0; i < 5; i++) yield Buffer.from(`line ${i}\n`);
    }
    await sbx().machine().agent.writeFile('/tmp/deep/er/gen.txt', gen(), { mode: 0o600, mkdirs: true });
    const st = await sbx().machine().agent.stat('/tmp/deep/er/gen.txt');
    assert.equal(st.type, 'file');
    assert.equal(st.mode, 0o600);
    assert.equal(
      (await readAll(sbx().machine().agent.readFile('/tmp/deep/er/gen.txt'))).toString(),
      'line 0\nline 1\nline 2\nline 3\nline 4\n',
    );
  });

  it('stats, lists, makes, renames and removes', async () => {
    const a = sbx().machine().agent;
    await a.mkdir('/tmp/t1/a/b');
    await a.writeFile('/tmp/t1/a/f.txt', 'x');
    const names = (await a.list('/tmp/t1/a')).map((e) => `${e.name}:${e.type}`).sort();
    assert.deepEqual(names, ['b:dir', 'f.txt:file']);
    await a.rename('/tmp/t1/a/f.txt', '/tmp/t1/g.txt');
    assert.equal((await a.stat('/tmp/t1/g.txt')).size, 1);
    await a.remove('/tmp/t1', { recursive: true });
    await assert.rejects(a.stat('/tmp/t1'), { code: 'notFound', path: '/tmp/t1' });
  });

  it('lists a directory too large for one frame', async () => {
    await sbx().run([
      'sh',
      '-c',
      'mkdir -p /tmp/many && cd /tmp/many && i=0; while [ $i -lt 6000 ]; do : > file-with-a-longish-name-$i; i=$((i+1)); done',
    ]);
    const entries = await sbx().machine().agent.list('/tmp/many');
    assert.equal(entries.length, 6000);
  });

  it('reports guest errors with a code and the path', async () => {
    const a = sbx().machine().agent;
    await assert.rejects(readAll(a.readFile('/nope/missing')), { code: 'notFound', path: '/nope/missing' });
    await assert.rejects(readAll(a.readFile('/tmp')), { code: 'isDirectory', path: '/tmp' });
    await assert.rejects(a.writeFile('/tmp', 'x'), { code: 'isDirectory', path: '/tmp' });
    await assert.rejects(a.list('/etc/passwd'), { code: 'notDirectory', path: '/etc/passwd' });
    await assert.rejects(a.remove('/tmp/nonexistent'), { code: 'notFound' });
    await assert.rejects(a.stat('relative/path'), { code: 'invalidArgument' });
  });

  it('reports permission denied, in the file API and for a command', async () => {
    const mounted = await sbx().run(['sh', '-c', 'mkdir -p /tmp/ro && mount -t tmpfs -o ro none /tmp/ro']);
    assert.equal(mounted.exitCode, 0, mounted.stderr);
    await assert.rejects(sbx().machine().agent.writeFile('/tmp/ro/f', 'x'), { code: 'permissionDenied', path: '/tmp/ro/f' });
    await assert.rejects(sbx().machine().agent.mkdir('/tmp/ro/d'), { code: 'permissionDenied', path: '/tmp/ro/d' });
    const r = await sbx().run(['cat', '/root/.profile-missing-or-not'], { user: 'nobody' });
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, /Permission denied/);
  });

  it('writes in place what a rename would break: a kernel file, a file with other hard links', async () => {
    const a = sbx().machine().agent;
    await a.writeFile('/proc/sys/kernel/domainname', 'vmbox-test');
    assert.equal((await sbx().run(['cat', '/proc/sys/kernel/domainname'])).stdout, 'vmbox-test\n');
    await sbx().run(['sh', '-c', 'echo old > /tmp/linked && ln -f /tmp/linked /tmp/other-name']);
    await a.writeFile('/tmp/linked', 'new\n');
    assert.equal((await sbx().run(['cat', '/tmp/other-name'])).stdout, 'new\n', 'both names still share the file');
  });
});
