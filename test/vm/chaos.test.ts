import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { runCli } from '../fixtures/cli.js';
import { isolatedHome, type TestHome, waitFor } from '../fixtures/home.js';

/*
 * Chaos: rounds of create/exec/stop/remove through the CLI while kill -9 hits
 * the server, a random QEMU or a CLI process at a random moment (a seeded
 * generator: a failure names its seed). After each round the invariants hold:
 * every sandbox the server lists is in a state that matches reality, no QEMU
 * runs without a sandbox, no sandbox folder is without its sandbox, the named
 * volume and the image are still there, and the next request works.
 */
const vmbox = fileURLToPath(new URL('../../vmbox', import.meta.url));
const ROUNDS = Number(process.env.CHAOS_ROUNDS || 6);
const SEED = Number(process.env.CHAOS_SEED || Date.now() % 100_000);
let t: TestHome;

/** mulberry32: small, seeded, good enough to pick moments and victims. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

before(async () => {
  t = isolatedHome();
  const v = await runCli(['volume', 'create', 'keep'], t.env);
  assert.equal(v.status, 0, v.stderr);
});

after(async () => {
  await t.cleanup();
});

/** A CLI process, killable; resolves when it ends, whatever its end. */
function cli(args: string[]): { child: ChildProcess; done: Promise<number | null> } {
  const child = spawn(vmbox, args, { env: t.env, stdio: 'ignore' });
  return { child, done: new Promise((r) => child.once('exit', (code) => r(code))) };
}

const qemusOfHome = () =>
  spawnSync('pgrep', ['-f', `qemu-system.*${t.home}/`], { encoding: 'utf8' })
    .stdout.trim()
    .split('\n')
    .filter(Boolean)
    .map(Number);

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
};

interface Row {
  id: string;
  name: string;
  state: string;
  pid?: number | null;
}

async function listed(): Promise<Row[]> {
  const r = await runCli(['ls', '--json'], t.env);
  assert.equal(r.status, 0, `vmbox ls works after the round: ${r.stderr}`);
  return JSON.parse(r.stdout) as Row[];
}

describe(`chaos (seed ${SEED}, ${ROUNDS} rounds)`, () => {
  it('keeps the books straight whatever is killed, whenever', async () => {
    const random = rng(SEED);
    const faults: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const names = [`c${round}a`, `c${round}b`];
      const running: Array<{ child: ChildProcess; done: Promise<number | null> }> = [];
      const lifecycle = async (name: string) => {
        for (const args of [
          ['create', '--name', name, '--memory', '128'],
          ['exec', name, '--', 'sh', '-c', 'echo x > /root/f; sync'],
          ['stop', name],
          ['rm', '-f', name],
        ]) {
          const op = cli(args);
          running.push(op);
          await op.done;
        }
      };
      const work = Promise.all(names.map(lifecycle));
      await sleep(300 + random() * 2500);
      const fault = ['server', 'qemu', 'cli'][Math.floor(random() * 3)] as string;
      if (fault === 'server') {
        const pid = t.serverPid();
        if (pid) process.kill(pid, 'SIGKILL');
      } else if (fault === 'qemu') {
        const pids = qemusOfHome();
        const victim = pids[Math.floor(random() * pids.length)];
        if (victim) process.kill(victim, 'SIGKILL');
      } else {
        const live = running.filter((o) => o.child.exitCode === null);
        live[Math.floor(random() * live.length)]?.child.kill('SIGKILL');
      }
      faults.push(fault);
      await work;

      // Settled: no sandbox between states (a server restarted by the next command reconciles what it finds).
      assert.ok(
        await waitFor(async () => (await listed()).every((r) => ['running', 'stopped', 'failed', 'paused'].includes(r.state)), 30_000),
        `round ${round} (${fault}): every sandbox settles`,
      );
      const rows = await listed();
      const ids = new Set(rows.map((r) => r.id));
      for (const r of rows) {
        const alive = qemusOfHome().some((pid) => cmdline(pid).includes(`vmbox-${r.id}`));
        assert.equal(
          alive,
          r.state === 'running',
          `round ${round} (${fault}): ${r.name} is ${r.state}, its QEMU ${alive ? 'runs' : 'does not'}`,
        );
      }
      for (const pid of qemusOfHome()) {
        const owner = cmdline(pid)
          .find((a) => a.startsWith('vmbox-'))
          ?.slice(6);
        // Warm-start templates and snapshot memory files are made by QEMUs of their own (tpl-…, mem-…).
        const builder = /^(tpl|mem)-/.test(owner ?? '');
        assert.ok(builder || (owner && ids.has(owner)), `round ${round} (${fault}): QEMU ${pid} belongs to a listed sandbox (${owner})`);
      }
      const dirs = existsSync(join(t.home, 'sandboxes')) ? readdirSync(join(t.home, 'sandboxes')) : [];
      for (const d of dirs) assert.ok(ids.has(d), `round ${round} (${fault}): folder ${d} belongs to a listed sandbox`);
      const vols = await runCli(['volume', 'ls'], t.env);
      assert.match(vols.stdout, /\bkeep\b/, `round ${round}: the named volume is kept`);
      const imgs = await runCli(['images'], t.env);
      assert.match(imgs.stdout, /\bbase\b/, `round ${round}: the image is kept`);
      const next = await runCli(['run', '--memory', '128', '--', 'echo', 'next'], t.env);
      assert.equal(next.stdout, 'next\n', `round ${round} (${fault}): the next request works: ${next.stderr}`);
      // What the round left (a sandbox its killed CLI never removed) goes now.
      for (const r of rows) await runCli(['rm', '-f', r.id], t.env);
    }
    console.log(`chaos seed ${SEED}: ${faults.join(', ')}`);
  });
});
