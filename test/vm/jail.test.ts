import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../../src/index.js';
import { cgroupOf } from '../../src/vmm/qemu/cgroups.js';
import { JAIL_ID_BASE, MEMORY_OVERHEAD_MIB, QEMU_PIDS_MAX } from '../../src/vmm/qemu/jail.js';
import { isolatedHome, type TestHome, waitFor } from '../fixtures/home.js';

/*
 * QEMU's jail, proved from the inside of the QEMU process: its uid, its seccomp
 * mode, its view of the filesystem, its network namespace and its limits — with
 * the sandbox booting and running commands under all of them.
 */
let t: TestHome;
let share: string;

before(() => {
  t = isolatedHome({ empty: true });
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
  share = mkdtempSync(join(tmpdir(), 'vmbox-jail-share-'));
});

after(async () => {
  await t.cleanup();
  rmSync(share, { recursive: true, force: true });
});

/** The pid of a sandbox's QEMU (it runs under the name vmbox-<id>). */
const qemuPid = (id: string) =>
  Number(
    execFileSync('pgrep', ['-f', '--', `-name vmbox-${id}`], { encoding: 'utf8' })
      .trim()
      .split('\n')[0],
  );
const status = (pid: number) => readFileSync(`/proc/${pid}/status`, 'utf8');
const field = (pid: number, name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status(pid))?.[1]?.trim();
/** Mount points as QEMU sees them. */
const mountsOf = (pid: number) =>
  readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' ')[4] as string);

describe('the QEMU jail', () => {
  it('runs QEMU as its own uid under seccomp, in its own mount and network namespaces, within its limits', async () => {
    const sbx = await Sandbox.create({ memoryMib: 256 });
    try {
      assert.equal((await sbx.commands.run(['echo', 'jailed'])).stdout, 'jailed\n', 'the sandbox runs commands');
      const pid = qemuPid(sbx.sandboxId);
      const [uid] = (field(pid, 'Uid') ?? '').split(/\s+/).map(Number);
      assert.ok(uid !== undefined && uid >= JAIL_ID_BASE, `QEMU runs as a sandbox uid, not root (${uid})`);
      assert.equal(field(pid, 'Gid')?.split(/\s+/)[0], String(uid));
      assert.equal(field(pid, 'Seccomp'), '2', "QEMU's seccomp filter is on");
      assert.equal(field(pid, 'NoNewPrivs'), '1');
      assert.equal(BigInt(`0x${field(pid, 'CapEff')}`), 0n, 'no capability without a share');
      assert.equal(BigInt(`0x${field(pid, 'CapBnd')}`), 0n);

      const dir = join(t.home, 'sandboxes', sbx.sandboxId);
      const st = statSync(dir);
      assert.equal(st.uid, uid, 'the sandbox directory is its QEMU uid’s');
      assert.equal(st.mode & 0o777, 0o700);
      assert.equal(statSync(t.home).mode & 0o077, 0, 'the home (state, token, sockets) is closed to other uids');

      const mounts = mountsOf(pid);
      assert.ok(mounts.includes('/usr') && mounts.includes('/proc') && mounts.includes(dir), mounts.join(' '));
      for (const m of mounts) {
        const allowed = ['/', '/usr', '/etc/ld.so.cache', '/proc', dir].includes(m) || m.startsWith('/dev/') || m.startsWith(`${t.home}/`);
        assert.ok(allowed, `QEMU sees only what it needs, not ${m}`);
      }
      // Not the home, not the state database, not another sandbox's folder.
      assert.ok(!mounts.includes(t.home));
      assert.ok(!existsSync(`/proc/${pid}/root${join(t.home, 'state.db')}`), 'the state database is out of its sight');
      assert.ok(!existsSync(`/proc/${pid}/root/etc/passwd`));
      assert.notEqual(
        execFileSync('readlink', [`/proc/${pid}/ns/net`], { encoding: 'utf8' }),
        execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' }),
        'QEMU has a network namespace of its own',
      );
      const links = readFileSync(`/proc/${pid}/net/dev`, 'utf8');
      assert.doesNotMatch(links, /eth|ens|enp|veth/, 'an empty one: loopback only');

      const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
      assert.match(limits, new RegExp(`Max processes\\s+${QEMU_PIDS_MAX}\\s+${QEMU_PIDS_MAX}`));
      assert.match(limits, /Max core file size\s+0\s+0/);
      const memory = cgroupOf(sbx.sandboxId, 'memory');
      if (memory) {
        assert.equal(Number(readFileSync(join(memory, 'memory.limit_in_bytes'), 'utf8')), (256 + MEMORY_OVERHEAD_MIB) * 1024 * 1024);
        assert.ok(readFileSync(join(memory, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid)), 'QEMU is in its memory group');
        const pids = cgroupOf(sbx.sandboxId, 'pids') as string;
        assert.equal(readFileSync(join(pids, 'pids.max'), 'utf8').trim(), String(QEMU_PIDS_MAX));
        // The guest using all its memory (page cache) keeps QEMU under its cap: the sandbox runs on.
        await sbx.commands.run(['sh', '-c', 'dd if=/dev/zero of=/root/fill bs=1M count=300 2>/dev/null; sync; rm /root/fill']);
        const peak = Number(readFileSync(join(memory, 'memory.max_usage_in_bytes'), 'utf8'));
        assert.ok(peak < (256 + MEMORY_OVERHEAD_MIB) * 1024 * 1024, `QEMU's peak ${peak >> 20} MiB stays under its cap`);
        assert.equal(Number(readFileSync(join(memory, 'memory.failcnt'), 'utf8')), 0, 'never at its cap');
        assert.equal((await sbx.commands.run(['echo', 'alive'])).stdout, 'alive\n');
        console.log(`QEMU of a 256 MiB guest after filling it: peak ${peak >> 20} MiB (cap ${256 + MEMORY_OVERHEAD_MIB} MiB)`);
      }
      await sbx.kill();
      if (memory) assert.ok(await waitFor(() => !existsSync(memory), 5000), 'its cgroups go with it');
    } finally {
      await sbx.kill().catch(() => {});
    }
  });

  it('gives QEMU DAC_OVERRIDE, and nothing more, for a host directory it shares; guest files land as its uid', async () => {
    writeFileSync(join(share, 'from-host'), 'hi\n', { mode: 0o600 });
    const sbx = await Sandbox.create({ memoryMib: 256, mounts: [{ type: 'bind', source: share, target: '/share' }] });
    try {
      const pid = qemuPid(sbx.sandboxId);
      assert.equal(BigInt(`0x${field(pid, 'CapEff')}`), 2n, 'CAP_DAC_OVERRIDE alone');
      assert.ok(mountsOf(pid).includes(share), 'the share is in its view');
      const r = await sbx.commands.run(
        ['sh', '-c', 'cat /share/from-host; echo new > /share/from-guest; chown 0:0 /share/from-guest; echo $?'],
        {
          user: 'root',
        },
      );
      assert.match(
        r.stdout,
        /^hi\n[1-9]\d*\n$/,
        'reads the host file (0600, root’s), makes one; a chown to root is refused (no CAP_CHOWN)',
      );
      const uid = Number((field(pid, 'Uid') ?? '').split(/\s+/)[0]);
      assert.equal(statSync(join(share, 'from-guest')).uid, uid, 'what the guest writes belongs to its QEMU uid');
      // A host directory gone between create and start: the start says which, before QEMU is tried.
      await sbx.stop();
      rmSync(share, { recursive: true, force: true });
      await assert.rejects(sbx.start(), /the host directory of \/share, .* is gone: make it again/);
      mkdirSync(share);
      await sbx.start();
      assert.equal((await sbx.commands.run(['ls', '/share'])).stdout, '', 'made again, it starts');
    } finally {
      await sbx.kill();
    }
  });

  it('boots warm clones and restores paused sandboxes through the jail (states pass over a socket, not a shell)', async () => {
    const sbx = await Sandbox.create({ memoryMib: 256 });
    try {
      await sbx.commands.run(['sh', '-c', 'echo kept > /tmp/state']);
      await sbx.pause();
      await sbx.resume();
      assert.equal((await sbx.commands.run(['cat', '/tmp/state'])).stdout, 'kept\n');
      assert.equal(field(qemuPid(sbx.sandboxId), 'Seccomp'), '2');
    } finally {
      await sbx.kill();
    }
  });
});
