import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, Volumes } from '../../src/index.js';
import { baseImageDir } from '../../src/setup/base-image.js';
import { JAIL_ID_BASE } from '../../src/vmm/qemu/jail.js';
import { cliIn } from '../fixtures/cli.js';
import { isolatedHome, type TestHome } from '../fixtures/home.js';

/*
 * Host directories, named volumes and tmpfs in real guests, and the rest of
 * the spec that shapes a guest's system: hostname and resource limits.
 */
let t: TestHome;
let host: string;
const { ok, refused } = cliIn(() => t.env);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

before(() => {
  t = isolatedHome({ empty: true });
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
  host = mkdtempSync(join(tmpdir(), 'vmbox-bind-'));
});

after(async () => {
  await t.cleanup();
  rmSync(host, { recursive: true, force: true });
});

describe('bind mounts', () => {
  it('carry files both ways, every byte value and 64 MiB, read-only and noexec enforced', async () => {
    const dir = join(host, 'rw');
    mkdirSync(dir);
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    writeFileSync(join(dir, 'all-bytes'), bytes);
    const big = randomBytes(64 * 1024 * 1024);
    writeFileSync(join(dir, 'big'), big);
    mkdirSync(join(host, 'ro'));
    writeFileSync(join(host, 'ro', 'kept'), 'kept');
    const sbx = await Sandbox.create({
      mounts: [
        { type: 'bind', source: dir, target: '/work' },
        { type: 'bind', source: join(host, 'ro'), target: '/ref', readOnly: true },
        { type: 'bind', source: dir, target: '/noexec', noexec: true },
      ],
    });
    try {
      const seen = await sbx.commands.run(['sh', '-c', 'sha256sum /work/all-bytes /work/big | cut -d" " -f1']);
      assert.deepEqual(seen.stdout.trim().split('\n'), [sha(bytes), sha(big)], 'the guest reads the host bytes');
      await sbx.commands
        .run(['sh', '-c', 'head -c 1048576 /dev/urandom > /work/from-guest && sha256sum /work/from-guest'])
        .then((r) => assert.equal(r.stdout.split(' ')[0], sha(readFileSync(join(dir, 'from-guest'))), 'the host reads the guest bytes'));
      writeFileSync(join(dir, 'later'), 'written on the host while mounted');
      assert.equal((await sbx.commands.run(['cat', '/work/later'])).stdout, 'written on the host while mounted');

      const ro = await sbx.commands.run(['sh', '-c', 'echo x > /ref/new; echo $?; cat /ref/kept']);
      assert.match(ro.stderr, /Read-only file system/);
      assert.equal(ro.stdout, '1\nkept');
      assert.equal(existsSync(join(host, 'ro', 'new')), false);

      await sbx.commands.run(['sh', '-c', 'printf "#!/bin/sh\\necho ran\\n" > /work/script && chmod +x /work/script']);
      assert.equal((await sbx.commands.run(['/work/script'])).stdout, 'ran\n');
      const noexec = (await sbx.commands.run(['/noexec/script']).catch((e: unknown) => e)) as { exitCode: number; stderr: string };
      // Host symlinks resolve (the default shows the host's own metadata, as Docker's bind mounts do).
      symlinkSync('all-bytes', join(dir, 'link'));
      assert.equal((await sbx.commands.run(['readlink', '/work/link'])).stdout, 'all-bytes\n');
      assert.equal(noexec.exitCode, 126, 'noexec: the same file does not run from the noexec mount');
      assert.match(noexec.stderr, /Permission denied/);
    } finally {
      await sbx.kill();
    }
  });

  it("keeps a guest chown in xattrs: the host file's owner stays, the guest sees it after a restart", async () => {
    const dir = join(host, 'owners');
    mkdirSync(dir);
    const sbx = await Sandbox.create({
      name: 'owners',
      mounts: [{ type: 'bind', source: dir, target: '/o', statVirtualization: 'strict' }],
    });
    try {
      await sbx.commands.run(['sh', '-c', 'echo x > /o/f && chown 1234:2345 /o/f']);
      // The host owner is whoever QEMU runs as: the sandbox's own uid when jailed (vmbox as root), else the server's.
      const hostOwner = statSync(join(dir, 'f')).uid;
      assert.ok(hostOwner === process.getuid?.() || hostOwner >= JAIL_ID_BASE, `the host file keeps QEMU's owner (${hostOwner})`);
      await ok('restart', 'owners');
      const again = await Sandbox.connect('owners');
      assert.equal((await again.commands.run(['stat', '-c', '%u:%g', '/o/f'])).stdout, '1234:2345\n');
      // 9p state cannot be saved with a VM's memory: a pause is refused, clearly.
      const paused = await refused('pause', 'owners');
      assert.match(paused, /mounts host directories or volumes.*cannot be paused/);
    } finally {
      await sbx.kill();
    }
  });
});

describe('named volumes, tmpfs, hostname, limits', () => {
  it('shares a volume between two running sandboxes and keeps it after they go', async () => {
    await ok('volume', 'create', 'shared', '--label', 'team=a');
    const a = await Sandbox.create({ name: 'va', mounts: [{ type: 'volume', source: 'shared', target: '/data' }] });
    const b = await Sandbox.create({ name: 'vb', mounts: [{ type: 'volume', source: 'shared', target: '/data', readOnly: true }] });
    try {
      await a.commands.run(['sh', '-c', 'echo from-a > /data/note']);
      assert.equal((await b.commands.run(['cat', '/data/note'])).stdout, 'from-a\n', 'the other sandbox reads it at once');
      assert.match(await ok('volume', 'ls'), /shared\s+directory\s+.*va,vb/);
      assert.match(await refused('volume', 'rm', 'shared'), /volume shared is mounted by va, vb: remove them first/);
    } finally {
      await a.kill();
      await b.kill();
    }
    const inspect = await Volumes.get('shared');
    assert.deepEqual(inspect.labels, { team: 'a' });
    assert.deepEqual(inspect.usedBy, [], 'its sandboxes are gone');
    assert.equal(readFileSync(join(inspect.path, 'note'), 'utf8'), 'from-a\n', 'it outlived its sandboxes');
    // ensure-exists (the default) makes one; prune removes what nothing mounts.
    const c = await Sandbox.create({ mounts: [{ type: 'volume', source: 'made-by-mount', target: '/m' }] });
    await c.kill();
    assert.deepEqual((await ok('volume', 'prune')).trim().split('\n').sort(), ['made-by-mount', 'shared']);
    assert.equal((await ok('volume', 'ls')).trim().split('\n').length, 1, 'only the header is left');
  });

  it('holds a directory volume to its quota: ENOSPC past it, and the sandbox works on', async () => {
    await ok('volume', 'create', 'budget', '--quota', '16m');
    const out = await ok(
      'run',
      '-v',
      'budget:/b',
      '--',
      'sh',
      '-c',
      'dd if=/dev/zero of=/b/fill bs=1M count=32 2>&1 | grep -o "No space left on device" | head -1; rm /b/fill; echo after > /b/ok; cat /b/ok',
    );
    assert.equal(out, 'No space left on device\nafter\n');
    assert.match(await ok('volume', 'inspect', 'budget'), /"quotaMib": 16/);
    await ok('volume', 'rm', 'budget');
  });

  it('keeps a disk volume after its sandbox, one writer at a time; mounts qcow2 and raw images', async () => {
    await ok('volume', 'create', 'dv', '--kind', 'disk', '--size', '128m');
    const w = await Sandbox.create({ name: 'writer', mounts: [{ type: 'volume', source: 'dv', target: '/dv' }] });
    await w.commands.run(['sh', '-c', 'echo kept > /dv/file']);
    // A second read-write mount is refused while the writer runs; read-only is fine.
    assert.match(await refused('create', '--name', 'second', '-v', 'dv:/dv'), /volume dv is mounted read-write by sandbox writer/);
    await w.kill();
    const again = await Sandbox.create({ mounts: [{ type: 'volume', source: 'dv', target: '/dv', readOnly: true }] });
    assert.equal((await again.commands.run(['cat', '/dv/file'])).stdout, 'kept\n', 'the disk volume outlived its sandbox');
    await again.kill();

    const raw = join(host, 'data.raw');
    writeFileSync(raw, '');
    execFileSync('truncate', ['-s', '32M', raw]);
    execFileSync('mkfs.ext4', ['-q', raw]);
    const qcow2 = join(host, 'data.qcow2');
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
    const out = await ok(
      'run',
      '--disk',
      `${qcow2}:/q`,
      '--disk',
      `${raw}:/r:ro`,
      '--',
      'sh',
      '-c',
      'echo q > /q/f && cat /q/f && mount | grep -c " /r type ext4 (ro"',
    );
    assert.equal(out, 'q\n1\n');

    const corrupt = join(host, 'corrupt.qcow2');
    writeFileSync(corrupt, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), randomBytes(4096)]));
    assert.match(await refused('run', '--disk', `${corrupt}:/c`, '--', 'true'), /mounts\.0\.source: .*not a disk image qemu-img can read/);
    const empty = join(host, 'empty.raw');
    execFileSync('truncate', ['-s', '8M', empty]);
    assert.match(await refused('run', '--disk', `${empty}:/e`, '--', 'true'), /no filesystem this guest knows/);
  });

  it('bounds a tmpfs by its size, names the host, limits every process', async () => {
    const out = await ok(
      'run',
      '--tmpfs',
      '/scratch:size=8m',
      '--hostname',
      'devbox',
      '--ulimit',
      'nofile=1000:2000',
      '--',
      'sh',
      '-c',
      'hostname; ulimit -n; ulimit -Hn; dd if=/dev/zero of=/scratch/fill bs=1M count=16 2>/dev/null; echo dd=$?; wc -c < /scratch/fill; echo still-working',
    );
    const [name, soft, hard, dd, filled, last] = out.trim().split('\n');
    assert.deepEqual([name, soft, hard, dd, last], ['devbox', '1000', '2000', 'dd=1', 'still-working'], out);
    assert.ok(Number(filled) <= 8 * 1024 * 1024 && Number(filled) > 7 * 1024 * 1024, `the tmpfs stopped the write at its size: ${filled}`);
  });

  it('runs named scripts with the spec’s shell, by name from the CLI and the SDK', async () => {
    await ok('create', '--name', 'scripted', '--script', 'greet=echo "hi $1 from $0"', '--script', 'fail=exit 7');
    assert.equal(await ok('exec', 'scripted', '--script', 'greet', '--', 'there'), 'hi there from greet\n');
    const sbx = await Sandbox.connect('scripted');
    assert.equal((await sbx.commands.run({ script: 'greet', args: ['sdk'] })).stdout, 'hi sdk from greet\n');
    assert.equal((await sbx.commands.run({ script: 'fail' }, { throwOnError: false })).exitCode, 7);
    assert.match(await refused('exec', 'scripted', '--script', 'nope'), /has no script nope \(it has greet, fail\)/);
    await sbx.kill();
  });

  it('restricts commands in the restricted profile: no sudo, no mount, plain commands work', async () => {
    const out = await ok(
      'run',
      '--image',
      'e2b-base',
      '--security',
      'restricted',
      '-v',
      `${host}:/h`,
      '--',
      'sh',
      '-c',
      'echo plain; sudo -n true 2>/dev/null || echo sudo-refused; mkdir -p /tmp/m; sudo -n mount -t tmpfs none /tmp/m 2>/dev/null || echo mount-refused; grep NoNewPrivs /proc/self/status; mount | grep " /h " | grep -c nosuid,nodev',
    );
    assert.equal(out, 'plain\nsudo-refused\nmount-refused\nNoNewPrivs:\t1\n1\n');
    const mountAs = (...flags: string[]) =>
      ok('run', ...flags, '--', 'sh', '-c', 'mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>&1; echo $?');
    for (const flags of [['--security', 'restricted'], []]) {
      assert.match(
        await mountAs(...flags),
        /(not permitted|permission denied).*\n[1-9]\d*\n$/i,
        `root without CAP_SYS_ADMIN cannot mount (${flags})`,
      );
    }
    assert.equal(await mountAs('--cap-add', 'sys_admin'), '0\n', 'granted by name, it can');
    assert.equal(await mountAs('--security', 'privileged'), '0\n', 'privileged holds every capability');
  });

  it("writes the agent's console log at the level asked", async () => {
    const consoleOf = async (logLevel?: 'debug') => {
      const sbx = await Sandbox.create(logLevel ? { logLevel } : {});
      await sbx.commands.run(['true']);
      const log = readFileSync(join(t.home, 'sandboxes', sbx.sandboxId, 'console.log'), 'utf8');
      await sbx.kill();
      return log;
    };
    const debug = await consoleOf('debug');
    assert.match(debug, /vmbox-agent: channel \d+: exec/);
    assert.match(debug, /vmbox-agent: started pid \d+ as uid 0: true/);
    assert.doesNotMatch(await consoleOf(), /vmbox-agent: (channel|started pid)/, 'the default (warn) leaves them out');
  });

  it("hands PID 1 to the image's init once prepared; the agent answers on", async () => {
    const sbx = await Sandbox.create({
      patches: [
        {
          op: 'write',
          path: '/sbin/tiny-init',
          text: '#!/bin/sh\necho "init as $$ with $1" > /run/init.log\nexec sleep 100000\n',
          mode: 0o755,
        },
      ],
      init: { path: '/sbin/tiny-init', args: ['hello'] },
      mounts: [{ type: 'tmpfs', target: '/scratch', sizeMib: 8 }],
    });
    try {
      const r = await sbx.commands.run([
        'sh',
        '-c',
        // The init starts as the create returns: its log is waited for (5 s at most), then read.
        'i=0; until [ -s /run/init.log ] || [ $i -ge 50 ]; do i=$((i+1)); sleep 0.1; done; cat /run/init.log; tr "\\0" " " < /proc/1/cmdline; echo; mount | grep -c " /scratch "',
      ]);
      assert.equal(r.stdout, 'init as 1 with hello\nsleep 100000 \n1\n');
    } finally {
      await sbx.kill();
    }
    await assert.rejects(Sandbox.create({ init: { path: '/sbin/no-such-init' } }), /init \/sbin\/no-such-init: .*No such file/);
  });

  it('paces each disk by its I/O limit', async () => {
    const out = await ok(
      'run',
      '--disk-bps',
      '4m',
      '--',
      'sh',
      '-c',
      's=$(cut -d" " -f1 /proc/uptime); dd if=/dev/zero of=/root/f bs=1M count=12 oflag=direct 2>/dev/null; e=$(cut -d" " -f1 /proc/uptime); echo "$e $s" | awk "{print \\$1 - \\$2}"',
    );
    assert.ok(Number(out) >= 2, `12 MiB at 4 MiB/s takes about 3 s, took ${out.trim()} s`);
  });

  it('boots a host disk image as the root, leaving the file unchanged, with room to write past its size', async () => {
    // The built-in base image's disk, as a user's qcow2 (the home shares the kernel cache only: make the image first).
    await ok('run', '--', 'true');
    const base = join(baseImageDir(), 'rootfs.ext4'); // this test's home (VMBOX_HOME is set above)
    assert.ok(existsSync(base), base);
    const root = join(host, 'root.qcow2');
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', base, root]);
    const before = sha(readFileSync(root));
    const out = await ok(
      'run',
      '--rootfs',
      root,
      '--upper-size',
      '512m',
      '--',
      'sh',
      '-c',
      'echo w > /written && cat /written && df -m / | tail -1 | awk "{print \\$2}"',
    );
    const [written, sizeMib] = out.trim().split('\n');
    assert.equal(written, 'w');
    assert.ok(Number(sizeMib) > 2300, `the root grew past the image's 2 GiB: ${sizeMib} MiB`);
    assert.equal(sha(readFileSync(root)), before, 'the image file is unchanged');
  });

  it('boots a host directory as the root; the guest writes into it', async () => {
    const root = join(host, 'rootdir');
    for (const d of ['bin', 'etc', 'tmp', 'root']) mkdirSync(join(root, d), { recursive: true });
    execFileSync('cp', ['/bin/busybox', join(root, 'bin/busybox')]);
    for (const applet of ['sh', 'cat', 'ls']) symlinkSync('busybox', join(root, 'bin', applet));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    const out = await ok('run', '--rootfs', root, '--', 'sh', '-c', 'cat /etc/passwd && echo from-guest > /tmp/note');
    assert.equal(out, 'root:x:0:0:root:/root:/bin/sh\n');
    assert.equal(readFileSync(join(root, 'tmp/note'), 'utf8'), 'from-guest\n');
  });

  it('refuses bad mounts and limits with one line naming the field, leaving nothing behind', async () => {
    const cases: [string[], RegExp][] = [
      [['-v', `${join(host, 'missing')}:/x`], /mounts\.0\.source: no such host directory/],
      [['-v', `${host}:relative`], /mounts\.0\.target: must be an absolute path/],
      [['-v', `${host}:/proc`], /mounts\.0\.target: .* \(\/, \/proc, \/sys, \/dev\)/],
      [['-v', `${host}:/a`, '-v', `${host}:/a/`], /mounts\.1\.target: \/a\/ is mounts\.0's target too/],
      [['--tmpfs', '/t:size=1g', '--memory', '256'], /mounts\.0\.sizeMib: .* at most memoryMib \(256\)/],
      [['--ulimit', 'nofile=10:5'], /rlimits\.nofile: soft \(10\) is above hard \(5\)/],
      [['--ulimit', 'nofiles=10'], /rlimits: .*|nofiles/],
    ];
    for (const [flags, why] of cases) assert.match(await refused('create', '--name', 'bad', ...flags), why, flags.join(' '));
    await assert.rejects(
      Sandbox.create({ name: 'bad', mounts: [{ type: 'volume', source: 'nosuch', target: '/x', mode: 'existing' }] }),
      /mounts\.0\.source: no volume named nosuch: make it with vmbox volume create nosuch/,
    );
    assert.doesNotMatch(await ok('ls'), /\bbad\b/, 'no sandbox was made');
    assert.doesNotMatch(await ok('volume', 'ls'), /nosuch/, 'no volume was made');
  });
});
