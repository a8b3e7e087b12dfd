import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Connection } from '../../src/sdk/connection.js';
import { isAlive } from '../../src/util/process.js';
import { isolatedHome, type TestHome, waitFor } from '../fixtures/home.js';
import { packedProject, packedSdk } from '../fixtures/packed.js';

/**
 * The rough edges a new user hits first, through the SDK as a user gets it
 * (`npm pack`ed, installed in a project of its own, type-checked with
 * `tsc --strict`), against a real server and real VMs in a home of its own.
 */
type Sdk = Awaited<ReturnType<typeof packedSdk>>;
let sdk: Sdk;
let t: TestHome;
let sbx: Awaited<ReturnType<Sdk['Sandbox']['create']>>;

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsc = join(root, 'node_modules', '.bin', 'tsc');
const typeRoots = join(root, 'node_modules', '@types');
const tscFlags = ['--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022'];
const tscLibs = ['--lib', 'es2023,esnext.disposable,dom', '--types', 'node', '--typeRoots', typeRoots, '--skipLibCheck'];

/** Compiles `source` as `<name>.ts` in the packed SDK's project with `tsc --strict`; `emit` writes `<name>.js` next to it. */
function compile(name: string, source: string, emit = false) {
  const dir = packedProject();
  writeFileSync(join(dir, `${name}.ts`), source);
  return spawnSync(tsc, [...tscFlags, ...tscLibs, ...(emit ? [] : ['--noEmit']), `${name}.ts`], { cwd: dir, encoding: 'utf8' });
}

before(async () => {
  t = isolatedHome();
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
  sdk = await packedSdk();
  // Packing built this checkout's dist/: the server comes from there, also when the
  // packed SDK starts it again (the installed package skipped its native build).
  process.env.VMBOX_SERVER_ENTRY = join(root, 'dist', 'vmbox.mjs');
  (await Connection.open()).close();
  sbx = await sdk.Sandbox.create({ image: 'base', memoryMib: 256, timeoutMs: 900_000 });
});
after(async () => {
  await sbx?.kill().catch(() => {});
  await t.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('callbacks may return anything', () => {
  it('type-checks callbacks that return a boolean, a number or nothing under tsc --strict', () => {
    const r = compile(
      'callbacks',
      `import { Sandbox } from 'vmbox';
const sbx = await Sandbox.create({ image: 'base', onServerStart: (i) => i.pid > 0 });
await sbx.commands.run('echo hi', { onStdout: (d) => process.stdout.write(d), onStderr: (d) => d.length });
const h = await sbx.commands.run('sleep 1', { background: true });
await sbx.commands.connect(h.pid, { onStdout: (d) => process.stdout.write(d) });
await sbx.pty.create({ cols: 80, rows: 24, onData: (b) => process.stdout.write(b) });
await sbx.pty.connect(1, { onData: (b) => b.length });
const w = await sbx.files.watchDir('/tmp', (e) => e.name.length, { onExit: (err) => err !== undefined });
await w.stop();
`,
    );
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('ignores what a callback returns unless it is a thenable, which is awaited before the next chunk', async () => {
    const r = await sbx.commands.run('echo out; echo err >&2', {
      onStdout: () => true,
      onStderr: () => 42,
    });
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');

    // A thenable that is not a Promise still holds the output back.
    let held = 0;
    let concurrent = 0;
    let maxConcurrent = 0;
    const seen: string[] = [];
    await sbx.commands.run('for i in 1 2 3 4 5; do echo $i; done', {
      onStdout: (d) => {
        seen.push(d);
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        return {
          // biome-ignore lint/suspicious/noThenProperty: a thenable that is not a Promise is the point
          then(resolve: () => void) {
            setTimeout(() => {
              held++;
              concurrent--;
              resolve();
            }, 20);
          },
        };
      },
    });
    assert.equal(seen.join(''), '1\n2\n3\n4\n5\n');
    assert.equal(held, seen.length, 'the call ended after every thenable settled');
    assert.equal(maxConcurrent, 1);
  });

  it('ends the call with the error a callback throws or rejects with, within the caller’s reach', async () => {
    class Mine extends Error {}
    await assert.rejects(
      sbx.commands.run('echo a; sleep 30', {
        onStdout: () => {
          throw new Mine('thrown');
        },
      }),
      (e: Error) => e instanceof Mine,
    );
    await assert.rejects(
      sbx.commands.run('echo a; sleep 30', { onStdout: () => Promise.reject(new Mine('rejected')) }),
      (e: Error) => e instanceof Mine && e.message === 'rejected',
    );
    // The foreground commands were abandoned with their sockets: the agent killed them.
    assert.ok(await waitFor(async () => !(await sbx.commands.list()).some((p) => p.argv.join(' ').includes('sleep 30')), 10_000));
  });
});

describe('endings that say what happened', () => {
  it('throws a TimeoutError with the output so far when a command reaches its timeoutMs', async () => {
    await assert.rejects(sbx.commands.run('echo partial; echo e >&2; sleep 30', { timeoutMs: 2000 }), (e: Error) => {
      assert.equal(e.name, 'CommandTimeoutError', e.message);
      assert.ok(e instanceof sdk.TimeoutError);
      assert.ok(e instanceof sdk.CommandTimeoutError);
      const err = e as InstanceType<Sdk['CommandTimeoutError']>;
      assert.equal(err.code, 'commandTimeout');
      assert.equal(err.result.timedOut, true);
      assert.equal(err.result.stdout, 'partial\n');
      assert.equal(err.stderr, 'e\n');
      assert.match(err.message, /timed out after 2000 ms/);
      return true;
    });
    const r = await sbx.commands.run('echo p; sleep 30', { timeoutMs: 1500, throwOnError: false });
    assert.equal(r.timedOut, true);
    assert.equal(r.stdout, 'p\n');
  });
});

describe('a slow reader', () => {
  it('gets every chunk, one at a time, with no listener per chunk (no MaxListenersExceededWarning)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    // A sink slower than the guest, waited on as a CLI waits on its stdout.
    const sink = new Writable({
      highWaterMark: 16 * 1024,
      write: (_c, _e, cb) => setTimeout(cb, 2),
    });
    let got = 0;
    let pending = 0;
    let maxPending = 0;
    try {
      const r = await sbx.commands.run("head -c 6291456 /dev/zero | tr '\\0' a", {
        maxOutputBytes: 0,
        throwOnError: false,
        onStdout: (d) => {
          got += d.length;
          if (sink.write(d)) return;
          pending++;
          maxPending = Math.max(maxPending, pending);
          return new Promise<void>((resolve) =>
            sink.once('drain', () => {
              pending--;
              resolve();
            }),
          );
        },
      });
      assert.equal(r.exitCode, 0);
      await sleep(100); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(got, 6291456);
    assert.equal(maxPending, 1, 'a callback is not called again while its promise is pending');
    assert.deepEqual(
      warnings.map((w) => `${w.name}: ${w.message}`),
      [],
    );
    assert.equal(sink.listenerCount('drain'), 0);
  });
});

describe('large output', () => {
  it('gives callbacks every byte and keeps the first maxOutputBytes in the result, marked truncated', async () => {
    const size = 8 * 1024 * 1024;
    const cap = 1024 * 1024;
    let streamed = 0;
    const r = await sbx.commands.run(`head -c ${size} /dev/zero | tr '\\0' a; echo done >&2`, {
      maxOutputBytes: cap,
      throwOnError: false,
      onStdout: (d) => {
        streamed += d.length;
      },
    });
    assert.equal(r.exitCode, 0);
    assert.equal(streamed, size, 'callbacks get everything');
    assert.equal(r.stdout.length, cap);
    assert.ok(/^a+$/.test(r.stdout));
    assert.equal(r.stderr, 'done\n', 'the other stream is kept whole');
    assert.equal(r.truncated, true);
    const small = await sbx.commands.run('echo small');
    assert.equal(small.truncated, false);
    assert.equal(sdk.DEFAULT_MAX_OUTPUT_BYTES, 64 * 1024 * 1024);
    // A failed command keeps the truncated result in its error.
    await assert.rejects(sbx.commands.run('head -c 5000 /dev/zero; exit 3', { maxOutputBytes: 1000 }), (e: Error) => {
      const err = e as InstanceType<Sdk['CommandExitError']>;
      assert.ok(err instanceof sdk.CommandExitError);
      assert.equal(err.result.stdout.length, 1000);
      assert.equal(err.result.truncated, true);
      return true;
    });
    await assert.rejects(sbx.commands.run('true', { maxOutputBytes: -1 }), (e: Error) => e instanceof sdk.InvalidArgumentError);
  });
});

describe('the README', () => {
  it('compiles its TypeScript examples with tsc --strict against the packed SDK and runs them against a real server', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] as string);
    assert.ok(blocks.length > 0, 'the README has TypeScript examples');
    for (const [i, block] of blocks.entries()) {
      const built = compile(`readme${i}`, block, true);
      assert.equal(built.status, 0, `README example ${i + 1}:\n${built.stdout}${built.stderr}`);
      const run = spawnSync(process.execPath, [`readme${i}.js`], {
        cwd: packedProject(),
        encoding: 'utf8',
        env: process.env,
        timeout: 300_000,
      });
      assert.equal(run.status, 0, `README example ${i + 1} ran:\n${run.stdout}\n${run.stderr}`);
      assert.equal(run.stderr, '', 'nothing on stderr');
    }
  });
});

describe('a sandbox stopped under a command', () => {
  it('tells the command’s caller that the sandbox was stopped, and why', async () => {
    let up = false;
    const running = sbx.commands.run('echo up; sleep 60', {
      onStdout: () => {
        up = true;
      },
    });
    running.catch(() => {});
    assert.ok(await waitFor(() => up, 30_000));
    await sbx.stop();
    await assert.rejects(running, (e: Error & { code?: string }) => {
      assert.equal(e.code, 'sandboxStopped', `${e.name}: ${e.message}`);
      assert.ok(e instanceof sdk.SandboxStoppedError);
      assert.match(e.message, /was stopped while the command ran \(stopped by request\)/);
      assert.doesNotMatch(e.message, /died/);
      return true;
    });
    await sbx.start();
    assert.equal((await sbx.commands.run('echo again')).stdout, 'again\n');
  });
});

describe('a server restart under a live Sandbox object', () => {
  const killServer = async () => {
    const pid = t.serverPid();
    assert.ok(pid, 'a server runs');
    process.kill(pid, 'SIGKILL');
    assert.ok(await waitFor(() => !isAlive(pid), 10_000));
    return pid;
  };

  it('gives a call in flight a ConnectionError; the next call starts the server again and reaches the same sandbox', async () => {
    let up = false;
    const inFlight = sbx.commands.run('echo up; sleep 60', {
      onStdout: () => {
        up = true;
      },
    });
    inFlight.catch(() => {});
    assert.ok(await waitFor(() => up, 30_000));
    const first = await killServer();
    await assert.rejects(inFlight, (e: Error & { code?: string; reason?: string }) => {
      assert.equal(e.code, 'connectionLost', `${e.name}: ${e.message}`);
      assert.ok(e instanceof sdk.ConnectionError);
      assert.equal(typeof e.reason, 'string');
      return true;
    });

    // A command: over a new WebSocket, after the server is started again.
    assert.equal((await sbx.commands.run('echo back')).stdout, 'back\n');
    const second = t.serverPid();
    assert.ok(second && second !== first, 'a new server');

    // A plain request, and a file upload, after another kill.
    await killServer();
    assert.equal((await sbx.getInfo()).id, sbx.sandboxId);
    await killServer();
    await sbx.files.write('/tmp/after-restart.txt', 'still here');
    assert.equal(await sbx.files.read('/tmp/after-restart.txt'), 'still here');
    assert.ok(t.serverPid());
  });
});
