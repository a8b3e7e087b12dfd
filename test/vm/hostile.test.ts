import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox } from '../../src/index.js';
import { isolatedHome, type TestHome, waitFor } from '../fixtures/home.js';

/*
 * A guest that attacks its host. The attack of record: a command running as
 * root takes a copy of the agent's port from PID 1 and speaks to the host in
 * its name. By default it cannot (the agent is not dumpable and commands lack
 * CAP_SYS_PTRACE). Granted that capability, test/fixtures/hostile-agent.py does
 * it and freezes the agent, then breaks the protocol each way a compromised
 * guest can: the host must fail that sandbox with the reason, fail the call in
 * flight with a clear error within a bounded time, stay within its memory, keep
 * every other sandbox working and write nothing outside the sandbox's folder.
 */
let t: TestHome;
let bystander: Sandbox;
const script = readFileSync(new URL('../fixtures/hostile-agent.py', import.meta.url), 'utf8');
/** The server's resident memory may grow by at most this much through every attack. */
const SERVER_RSS_SLACK = 150 * 1024 * 1024;
/** A violation fails the call in flight within this long (a boot under TCG is 1–2 s; the attacker's Python starts in under 1 s). */
const DETECTED_WITHIN_MS = 15_000;
/** The host directories the attackers signal through (each stays its sandbox's mount until the end). */
const signals: string[] = [];

before(async () => {
  t = isolatedHome();
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
  bystander = await Sandbox.create({ memoryMib: 256 });
});

after(async () => {
  await bystander?.kill().catch(() => {});
  await t.cleanup();
  for (const s of signals) rmSync(s, { recursive: true, force: true });
});

const serverRss = () => {
  const pid = t.serverPid();
  assert.ok(pid, 'the server runs');
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
};

/**
 * Every file under the home, but the sandbox's own folder, the bystander's (its log grows), and what
 * the server writes on its own meanwhile (its state and log, warm-start templates built in the background).
 */
const filesOutside = (id: string) => {
  const out: string[] = [];
  const skip = [join(t.home, 'sandboxes', id), join(t.home, 'sandboxes', bystander.sandboxId), join(t.home, 'templates')];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (skip.includes(p) || /\/(state\.db.*|server\.log|cache|images)$/.test(p)) continue;
      if (e.isDirectory()) walk(p);
      else out.push(`${p} ${statSync(p).size}`);
    }
  };
  walk(t.home);
  return out.sort();
};

describe('a guest command against the agent', () => {
  it('cannot reach the agent by default: not dumpable, no CAP_SYS_PTRACE, Docker’s default capabilities', async () => {
    const sbx = await Sandbox.create({ image: 'e2b-base', memoryMib: 256 });
    try {
      await sbx.files.write('/tmp/h.py', script);
      const r = await sbx.commands.run(['python3', '/tmp/h.py', 'garbage', '/tmp/ready'], { user: 'root' }).catch((e) => e);
      assert.equal(r.exitCode, 3, `the theft fails: ${r.stderr}`);
      assert.match(r.stderr, /ptrace seize: Operation not permitted/);
      const getfd = await sbx.commands.run(
        [
          'python3',
          '-c',
          'import ctypes, os; c = ctypes.CDLL(None, use_errno=True); r = c.syscall(438, os.pidfd_open(1), 0, 0); print(r, os.strerror(ctypes.get_errno()))',
        ],
        { user: 'root' },
      );
      assert.equal(getfd.stdout, '-1 Operation not permitted\n', 'pidfd_getfd on the agent is refused');
      const probe = await sbx.commands.run(
        ['sh', '-c', 'grep CapBnd /proc/self/status; cat /proc/1/environ >/dev/null 2>&1 || echo closed'],
        {
          user: 'root',
        },
      );
      assert.equal(probe.stdout, 'CapBnd:\t00000000a80425fb\nclosed\n');
      assert.equal((await sbx.getInfo()).state, 'running');
    } finally {
      await sbx.kill();
    }
  });
});

/**
 * A sandbox whose agent the attacker has taken over: resolves once the attacker
 * says so through a shared host directory, so no request of the test's races the freeze.
 */
async function takenOver(scenario: string, spec: { restart?: 'on-failure' } = {}) {
  const signal = mkdtempSync(join(tmpdir(), 'vmbox-hostile-'));
  const sbx = await Sandbox.create({
    image: 'e2b-base',
    memoryMib: 256,
    capAdd: ['SYS_PTRACE'],
    mounts: [{ type: 'bind', source: signal, target: '/signal' }],
    ...spec,
  });
  await sbx.files.write('/tmp/h.py', script);
  const attacker = sbx.commands.run(['python3', '/tmp/h.py', scenario, '/signal/ready'], { user: 'root' }).catch((e: Error) => e);
  signals.push(signal);
  const ready = await waitFor(() => existsSync(join(signal, 'ready')), DETECTED_WITHIN_MS);
  assert.ok(ready, `the attacker took the agent over (${scenario})`);
  return { sbx, attacker };
}

describe('a compromised guest (the agent taken over)', () => {
  // Each scenario: what the attacker does, and the call that meets it (none: the sandbox's own traffic does).
  const scenarios: Array<[string, (s: Sandbox) => Promise<unknown>, RegExp]> = [
    ['oversized', (s) => s.commands.run(['true']), /over the 1048576-byte maximum/],
    ['garbage', (s) => s.commands.run(['true']), /agent protocol violation/],
    ['unknown-channel', (s) => s.commands.run(['true']), /never opened/],
    ['bad-json', (s) => s.commands.run(['true']), /malformed JSON/],
    ['wrong-types', (s) => s.commands.run(['true']), /a started payload with \/pid/],
    ['bad-names', (s) => s.files.list('/tmp'), /a directory entry named/],
    ['long-name', (s) => s.files.list('/tmp'), /a directory entry named "x{64}"…/],
    ['watch-outside', (s) => s.files.watchDir('/tmp', () => {}), /outside \/tmp/],
    ['absurd-stats', () => sleep(1500), /a stats payload/],
    ['flood', (s) => s.commands.run(['true']), /without credit/],
  ];
  const rssBefore: number[] = [];

  for (const [scenario, call, reason] of scenarios) {
    it(`fails the sandbox, not the host: ${scenario}`, async () => {
      rssBefore.push(serverRss());
      const { sbx, attacker } = await takenOver(scenario);
      const outsideBefore = filesOutside(sbx.sandboxId);
      try {
        const started = Date.now();
        const failure = await call(sbx).then(
          () => undefined,
          (e: { code?: string; message?: string }) => e,
        );
        // What the attacker sends unasked (or the sandbox's own metrics meet) may fail the sandbox before the call.
        if (failure?.code === 'agentProtocol') assert.match(failure.message ?? '', reason);
        else
          assert.ok(!failure || failure.code === 'invalidState' || failure.code === 'sandboxStopped', `${scenario}: ${failure?.message}`);
        assert.ok(
          await waitFor(async () => (await sbx.getInfo()).state === 'failed', DETECTED_WITHIN_MS),
          `the sandbox is marked failed (${(await sbx.getInfo()).state})`,
        );
        assert.ok(Date.now() - started < DETECTED_WITHIN_MS, `failed within ${DETECTED_WITHIN_MS} ms`);
        console.log(`${scenario}: the sandbox failed ${Date.now() - started} ms after the takeover`);
        const failed = await sbx.getInfo();
        assert.match(failed.reason ?? '', /^agent protocol violation: /);
        assert.match(failed.reason ?? '', reason);
        assert.ok(
          failed.events.some((e) => /agent protocol violation/.test(e.message)),
          'the events say why',
        );
        const attackerEnd = await attacker;
        assert.ok(attackerEnd instanceof Error, 'the attacker’s own command ends with the connection');
        // The host and the other sandboxes are unharmed; the failed one starts again from its disk.
        assert.equal((await bystander.commands.run(['echo', 'unharmed'])).stdout, 'unharmed\n');
        assert.ok(serverRss() - (rssBefore[0] as number) < SERVER_RSS_SLACK, `server RSS ${serverRss()} stays bounded`);
        assert.deepEqual(filesOutside(sbx.sandboxId), outsideBefore, 'nothing written outside the sandbox folder');
        await sbx.start();
        assert.equal((await sbx.commands.run(['echo', 'back'])).stdout, 'back\n');
      } finally {
        await sbx.kill();
      }
    });
  }

  it('holds a command to its timeout when the taken-over guest never answers', async () => {
    const { sbx } = await takenOver('silent');
    try {
      // The guest no longer answers: a command with a 1 s timeout ends at the host's cut-off (timeout + 10 s grace).
      const t0 = Date.now();
      const r = await sbx.commands.run(['sleep', '5'], { timeoutMs: 1000 }).catch((e) => e);
      assert.equal(r?.code, 'commandTimeout', 'the host cut the command off');
      assert.ok(Date.now() - t0 >= 10_000 && Date.now() - t0 < 20_000, `at the timeout and its grace (${Date.now() - t0} ms)`);
      assert.equal((await bystander.commands.run(['echo', 'unharmed'])).stdout, 'unharmed\n');
    } finally {
      await sbx.kill();
    }
  });

  it('starts a failed sandbox again when its policy says on-failure, at most maxRestarts times', async () => {
    const sbx = await Sandbox.create({ memoryMib: 128, restart: 'on-failure', maxRestarts: 1 });
    const killQemu = () => {
      const pid = Number(execFileSync('pgrep', ['-f', '--', `-name vmbox-${sbx.sandboxId}`], { encoding: 'utf8' }).trim());
      process.kill(pid, 'SIGKILL');
    };
    try {
      killQemu();
      assert.ok(await waitFor(async () => (await sbx.getInfo()).state === 'failed', 10_000), 'the sandbox failed');
      assert.ok(await waitFor(async () => (await sbx.getInfo()).state === 'running', 20_000), 'and was started again');
      assert.equal((await sbx.commands.run(['echo', 'again'])).stdout, 'again\n');
      killQemu();
      assert.ok(await waitFor(async () => (await sbx.getInfo()).state === 'failed', 10_000));
      await sleep(3000);
      const info = await sbx.getInfo();
      assert.equal(info.state, 'failed', 'a second failure within ten minutes stays failed (maxRestarts 1)');
      assert.ok(
        info.events.some((e) => /not restarted \(maxRestarts 1\)/.test(e.message)),
        'the log says why',
      );
    } finally {
      await sbx.kill();
    }
  });

  it('fails a file transfer cut off in the middle (the VM gone) at once, and the sandbox with it', async () => {
    const sbx = await Sandbox.create({ memoryMib: 256 });
    try {
      await sbx.commands.run(['dd', 'if=/dev/urandom', 'of=/tmp/big', 'bs=1M', 'count=48']);
      const pid = Number(execFileSync('pgrep', ['-f', '--', `-name vmbox-${sbx.sandboxId}`], { encoding: 'utf8' }).trim());
      let received = 0;
      const started = Date.now();
      const read = (async () => {
        for await (const chunk of await sbx.files.read('/tmp/big', { format: 'stream' })) {
          received += (chunk as Uint8Array).length;
          if (received >= 1024 * 1024 && received - (chunk as Uint8Array).length < 1024 * 1024) process.kill(pid, 'SIGKILL');
        }
      })();
      await assert.rejects(read, 'the read fails, it does not end as if the file were whole');
      assert.ok(received < 48 * 1024 * 1024, `cut off mid-way (${received} bytes)`);
      assert.ok(Date.now() - started < DETECTED_WITHIN_MS);
      assert.ok(await waitFor(async () => (await sbx.getInfo()).state === 'failed', 10_000), 'the sandbox is marked failed');
      assert.match((await sbx.getInfo()).reason ?? '', /killed by SIGKILL/);
    } finally {
      await sbx.kill();
    }
  });

  it('fails a sandbox whose guest claims another protocol generation when a new server says hello', async () => {
    const { sbx } = await takenOver('generation');
    try {
      // Until a new server says hello, the attacker refuses requests in good form.
      await assert.rejects(sbx.commands.run(['true']), /hostile ready/);
      process.kill(t.serverPid() as number, 'SIGKILL');
      // The next call starts a server, which adopts the VM and says hello: the answer claims generation 2.
      assert.ok(await waitFor(async () => (await sbx.getInfo()).state === 'failed', 30_000), 'the sandbox is marked failed');
      assert.match((await sbx.getInfo()).reason ?? '', /protocol generation 2/);
      assert.equal(spawnSync('pgrep', ['-f', '--', `-name vmbox-${sbx.sandboxId}`]).status, 1, 'its VM was ended');
    } finally {
      await sbx.kill();
    }
  });
});
