import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { VmboxError } from '../../src/errors.js';
import { Sandbox } from '../../src/sdk/sandbox.js';
import { isolatedHome, waitFor } from '../fixtures/home.js';
import { tarball } from '../fixtures/image-writer.js';

/** The everyday edges of the CLI, each driven as a user would: pipes, no terminal, cp, logs, options. */
const vmbox = fileURLToPath(new URL('../../vmbox', import.meta.url));
const t = isolatedHome();
// A small log budget, so a command's output rotates many times within a test.
const env = { ...t.env, VMBOX_LOG_MAX_BYTES: String(64 * 1024) };
const run = (args: string[], opts: { input?: string; timeout?: number } = {}) =>
  spawnSync(vmbox, args, { encoding: 'utf8', env, maxBuffer: 64 << 20, timeout: opts.timeout ?? 120_000, input: opts.input });
/** A shell pipeline with `$VMBOX` as the CLI. */
const sh = (line: string, timeout = 120_000) => spawnSync('sh', ['-c', line], { encoding: 'utf8', env: { ...env, VMBOX: vmbox }, timeout });
const inGuest = (script: string) => run(['exec', 'dev', '--', 'sh', '-c', script]);
const scratch = mkdtempSync(join(tmpdir(), 'vmbox-edges-'));
const imageTag = `edges-entrypoint:${process.pid}`;

before(() => {
  // The in-process SDK talks to the same server as the CLI runs.
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
  // SYS_ADMIN: a test mounts a small tmpfs in the guest to fill it.
  const r = run(['create', '--name', 'dev', '--memory', '256', '--cap-add', 'SYS_ADMIN']);
  assert.equal(r.status, 0, r.stderr);
});
after(async () => {
  run(['rm', '-f', 'dev', 'ep']);
  run(['rmi', '--force', imageTag]);
  rmSync(scratch, { recursive: true, force: true });
  await t.cleanup();
});

describe('a reader that goes away (vmbox … | head)', () => {
  it('ends exec, run, logs and inspect quietly, as cat does', async () => {
    for (const line of ['"$VMBOX" exec dev -- seq 100000 | head -1', '"$VMBOX" run -- seq 100000 | head -1']) {
      const r = sh(line);
      assert.equal(r.stdout, '1\n', line);
      assert.equal(r.stderr, '', `${line}: ${r.stderr}`);
    }
    // `true` is gone before the CLI writes its first byte.
    for (const line of ['"$VMBOX" inspect dev | true', '"$VMBOX" logs dev | true', '"$VMBOX" exec dev -- seq 1000 | true']) {
      const r = sh(line);
      assert.equal(r.stderr, '', `${line}: ${r.stderr}`);
    }
    const names = () => (JSON.parse(run(['ls', '--json']).stdout) as { name: string }[]).map((s) => s.name);
    assert.ok(await waitFor(() => names().length === 1), `the server removed the run's sandbox: ${names()}`);
    assert.equal(
      sh('set -e; "$VMBOX" exec dev -- seq 100000 | head -1 >/dev/null; "$VMBOX" exec dev -- true; echo still-fine').stdout,
      'still-fine\n',
    );
  });
});

describe('vmbox shell without a terminal', () => {
  it('runs the shell on our stdin and output, without a terminal in the guest', () => {
    const r = run(['shell', 'dev'], { input: 'echo hi\n[ -t 0 ] && echo on-a-tty\nexit 3\n', timeout: 60_000 });
    assert.equal(r.signal, null, 'it ended on its own');
    assert.equal(r.stdout, 'hi\n', r.stderr);
    assert.equal(r.status, 3);
    const piped = sh(`echo 'echo piped' | "$VMBOX" shell dev`, 60_000);
    assert.equal(piped.signal, null, 'the end of stdin ends the shell');
    assert.equal(piped.stdout, 'piped\n', piped.stderr);
    assert.equal(piped.status, 0);
  });
});

describe('vmbox logs --source system', () => {
  it('keeps why the sandbox started and stopped however much its commands print', () => {
    // 64 KiB of budget against about 2.7 MB of output: the output rotates dozens of times.
    const big = run(['exec', 'dev', '--', 'seq', '400000']);
    assert.equal(big.status, 0, big.stderr);
    const system = run(['logs', '--source', 'system', 'dev']);
    assert.equal(system.status, 0, system.stderr);
    assert.match(system.stdout, /\[vmbox\] created from image base/);
    assert.match(system.stdout, /\[vmbox\] started \(VM pid \d+\)/);
    assert.ok(run(['logs', '--tail', '1', 'dev']).stdout.endsWith('\n400000\n'), 'the output is there too, its newest kept');
    const both = run(['logs', '--source', 'system,stdout', 'dev']).stdout;
    assert.ok(both.indexOf('[vmbox] started') < both.indexOf('400000\n'), 'in time order');
  });
});

describe('vmbox cp', () => {
  it('copies symlinks as symlinks both ways, never following one out of the copied tree', () => {
    const tree = join(scratch, 'tree');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    writeFileSync(join(scratch, 'secret'), 'host secret\n');
    writeFileSync(join(tree, 'file'), 'in the tree\n');
    symlinkSync('file', join(tree, 'rel'));
    symlinkSync('../secret', join(tree, 'up'));
    symlinkSync(join(scratch, 'secret'), join(tree, 'sub', 'abs'));
    const up = run(['cp', tree, 'dev:/linked']);
    assert.equal(up.status, 0, up.stderr);
    assert.match(up.stderr, /copied 1 file and 3 symlinks/);
    const seen = inGuest('cd /linked && readlink rel && readlink up && readlink sub/abs && cat rel && [ ! -e up ] && echo up-dangles');
    assert.equal(seen.stdout, `file\n../secret\n${join(scratch, 'secret')}\nin the tree\nup-dangles\n`, seen.stderr);

    inGuest(
      'mkdir -p /g/tree && echo outside > /g/outside && echo inside > /g/tree/a && ln -s /g/outside /g/tree/out && ln -s a /g/tree/alias',
    );
    const back = join(scratch, 'back');
    const down = run(['cp', 'dev:/g/tree', back]);
    assert.equal(down.status, 0, down.stderr);
    assert.ok(lstatSync(join(back, 'out')).isSymbolicLink());
    assert.equal(readlinkSync(join(back, 'out')), '/g/outside');
    assert.equal(readlinkSync(join(back, 'alias')), 'a');
    assert.equal(readFileSync(join(back, 'a'), 'utf8'), 'inside\n');

    // SRC itself a symlink: copied as one, or with -L what it points to.
    assert.equal(run(['cp', 'dev:/g/tree/out', join(scratch, 'out-link')]).status, 0);
    assert.equal(readlinkSync(join(scratch, 'out-link')), '/g/outside');
    assert.equal(run(['cp', '-L', 'dev:/g/tree/out', join(scratch, 'out-file')]).status, 0);
    assert.equal(readFileSync(join(scratch, 'out-file'), 'utf8'), 'outside\n');
  });

  it('refuses a missing destination parent unless -p, naming it', () => {
    const f = join(scratch, 'one');
    writeFileSync(f, 'one\n');
    const refused = run(['cp', f, 'dev:/no/such/dir/one']);
    assert.equal(refused.status, 1);
    assert.equal(
      refused.stderr,
      'vmbox: dev:/no/such/dir: no such directory in the sandbox: create it, or pass -p to make missing parents\n',
    );
    assert.equal(inGuest('[ -e /no ] || echo absent').stdout, 'absent\n', 'nothing was made');
    assert.equal(run(['cp', '-p', f, 'dev:/no/such/dir/one']).status, 0);
    assert.equal(inGuest('cat /no/such/dir/one').stdout, 'one\n');

    const hostMissing = join(scratch, 'missing', 'deeper', 'one');
    const refusedHere = run(['cp', 'dev:/no/such/dir/one', hostMissing]);
    assert.equal(refusedHere.status, 1);
    assert.match(refusedHere.stderr, /^vmbox: .*\/missing\/deeper: no such directory on the host: create it, or pass -p/);
    assert.equal(run(['cp', '-p', 'dev:/no/such/dir/one', hostMissing]).status, 0);
    assert.equal(readFileSync(hostMissing, 'utf8'), 'one\n');
  });

  it('names the path when the guest runs out of space, and leaves no partial file', () => {
    assert.equal(inGuest('mkdir -p /small && mount -t tmpfs -o size=64k tmpfs /small && echo old > /small/f').status, 0);
    const big = join(scratch, 'big');
    writeFileSync(big, Buffer.alloc(1 << 20, 7));
    const r = run(['cp', big, 'dev:/small/f']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^vmbox: write \/small\/f: No space left on device\n$/);
    assert.equal(inGuest('ls -A /small; cat /small/f').stdout, 'f\nold\n', 'the old file whole, no temporary file left');
  });

  it('leaves the old file whole when the copy is killed mid-way', async () => {
    await interruptedCopy((child) => child.kill('SIGKILL'));
  });

  it('leaves the old file whole when the server is killed mid-copy', async () => {
    await interruptedCopy(() => process.kill(t.serverPid() as number, 'SIGKILL'));
    assert.match(run(['logs', '--source', 'system', 'dev']).stdout, /reattached to the running VM/, 'the sandbox outlived the server');
  });
});

/** Copies a gigabyte over a file, interrupts it with `cut` once under way; the old file must stay whole. */
async function interruptedCopy(cut: (child: ChildProcess) => void): Promise<void> {
  assert.equal(inGuest('echo old > /tmp/keep').status, 0);
  const big = join(scratch, 'huge');
  writeFileSync(big, '');
  truncateSync(big, 1 << 30); // sparse: a gigabyte that costs nothing on the host
  const child = spawn(vmbox, ['cp', big, 'dev:/tmp/keep'], { env, stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    // Under way: a temporary file beside it, or (written in place) the old content already gone.
    const started = await waitFor(
      () => /^\.keep\.vmbox-|^changed$/m.test(inGuest('ls -A /tmp; [ "$(head -c 3 /tmp/keep)" = old ] || echo changed').stdout),
      60_000,
    );
    assert.ok(started, 'the copy is under way');
    cut(child);
  } finally {
    child.kill('SIGKILL');
  }
  await exited;
  assert.ok(await waitFor(() => !/\.keep\.vmbox-/.test(inGuest('ls -A /tmp').stdout), 20_000), 'the temporary file is removed');
  assert.equal(inGuest('[ "$(cat /tmp/keep)" = old ] && echo whole || wc -c /tmp/keep').stdout, 'whole\n');
}

describe('files.write through the SDK', () => {
  it('makes parents by default (as E2B), refuses with makeParents: false; an interrupted write keeps the old file', async () => {
    const sbx = await Sandbox.connect('dev');
    try {
      await sbx.files.write('/sdk/a/b.txt', 'made\n');
      assert.equal(await sbx.files.read('/sdk/a/b.txt'), 'made\n');
      await assert.rejects(sbx.files.write('/sdk/none/c.txt', 'x', { makeParents: false }), (err: VmboxError) => {
        assert.equal(err.code, 'notFound');
        assert.match(err.message, /\/sdk\/none/);
        return true;
      });
      assert.equal(await sbx.files.exists('/sdk/none'), false);

      async function* failing() {
        yield Buffer.alloc(256 << 10, 1);
        await new Promise((r) => setTimeout(r, 200));
        throw new Error('the source broke');
      }
      await assert.rejects(sbx.files.write('/sdk/a/b.txt', failing()));
      assert.ok(await waitFor(async () => (await sbx.files.list('/sdk/a')).length === 1, 10_000), 'only b.txt: the temporary file is gone');
      assert.equal(await sbx.files.read('/sdk/a/b.txt'), 'made\n');
    } finally {
      sbx.close();
    }
  });
});

describe('--entrypoint and metadata', () => {
  before(async () => {
    const layout = join(scratch, 'layout');
    await writeOciLayout(layout, { Entrypoint: ['/bin/echo', 'from-entrypoint'], Cmd: ['from-cmd'] });
    const r = run(['image', 'import', layout, '--name', imageTag]);
    assert.equal(r.status, 0, r.stderr);
  });

  it('run --entrypoint replaces the image’s entrypoint and its cmd; an empty one runs the command alone', () => {
    const image = ['--image', imageTag];
    assert.equal(run(['run', ...image]).stdout, 'from-entrypoint from-cmd\n');
    assert.equal(run(['run', ...image, '--entrypoint', '/bin/echo', '--', 'hi']).stdout, 'hi\n');
    assert.equal(run(['run', ...image, '--entrypoint', '/bin/echo']).stdout, '\n', 'the image’s cmd goes with its entrypoint');
    assert.equal(run(['run', ...image, '--entrypoint', '', '--', '/bin/echo', 'plain']).stdout, 'plain\n');
  });

  it('create --entrypoint sets the command vmbox exec runs when given none; info carries metadata', async () => {
    const r = run([
      'create',
      '--name',
      'ep',
      '--image',
      imageTag,
      '-l',
      'team=ml',
      '--entrypoint',
      '/bin/sh',
      '--',
      '-c',
      'echo default-$((6*7))',
    ]);
    assert.equal(r.status, 0, r.stderr);
    const ex = run(['exec', 'ep']);
    assert.equal(ex.stdout, 'default-42\n', ex.stderr);
    assert.equal(run(['exec', 'ep', '--', '/bin/echo', 'given']).stdout, 'given\n');
    const none = run(['exec', 'dev']);
    assert.equal(none.status, 1);
    assert.match(none.stderr, /^vmbox: give a command after --, e\.g\. vmbox exec dev -- sh \(this sandbox has no default command/);

    assert.deepEqual(JSON.parse(run(['inspect', 'ep']).stdout).metadata, { team: 'ml' });
    const sbx = await Sandbox.connect('ep');
    try {
      assert.deepEqual((await sbx.getInfo()).metadata, { team: 'ml' });
      const listed = await Sandbox.list({ query: { metadata: { team: 'ml' } } });
      assert.deepEqual(
        listed.map((s) => [s.name, s.metadata]),
        [['ep', { team: 'ml' }]],
      );
    } finally {
      sbx.close();
    }
  });
});

/** An OCI image layout of one layer (busybox and its applets) with the given config. */
async function writeOciLayout(dir: string, config: { Entrypoint?: string[]; Cmd?: string[] }): Promise<void> {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (data: Buffer) => {
    const hex = createHash('sha256').update(data).digest('hex');
    writeFileSync(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const applets = ['sh', 'echo', 'cat', 'ls', 'true'];
  const tar = await tarball([
    { name: 'bin/', type: 'directory' },
    { name: 'bin/busybox', body: readFileSync('/bin/busybox'), mode: 0o755 },
    ...applets.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, linkname: 'busybox' })),
    { name: 'tmp/', type: 'directory', mode: 0o1777 },
    { name: 'proc/', type: 'directory' },
    { name: 'sys/', type: 'directory' },
    { name: 'dev/', type: 'directory' },
  ]);
  const l = put(tar);
  const cfg = put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/bin'], ...config },
        rootfs: { type: 'layers', diff_ids: [l.digest] },
      }),
    ),
  );
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l }],
      }),
    ),
  );
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }] }),
  );
}
