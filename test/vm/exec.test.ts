import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sharedSandbox } from './helpers.js';

describe('exec in a real microVM', () => {
  const sbx = sharedSandbox({ env: { FROM_SPEC: 'spec' } });

  it('runs in the guest kernel, not the host one', async () => {
    const r = await sbx().run(['uname', '-r']);
    assert.equal(r.exitCode, 0);
    assert.match(r.stdout, /^6\.1\./);
    assert.notEqual(r.stdout.trim(), (await import('node:os')).release());
  });

  it('returns exit codes, and 128+N for a signal', async () => {
    assert.equal((await sbx().run(['sh', '-c', 'exit 7'])).exitCode, 7);
    const killed = await sbx().run(['sh', '-c', 'kill -9 $$']);
    assert.equal(killed.signal, 9);
    assert.equal(killed.exitCode, 137);
  });

  it('keeps stdout and stderr apart', async () => {
    const r = await sbx().run(['sh', '-c', 'echo out; echo err >&2; echo out2']);
    assert.equal(r.stdout, 'out\nout2\n');
    assert.equal(r.stderr, 'err\n');
  });

  it('feeds stdin to the command', async () => {
    let out = '';
    const p = sbx().exec(['cat'], {
      stdin: true,
      onStdout: (d) => {
        out += d;
      },
    });
    await p.write('hello ');
    await p.write(Buffer.from('stdin'));
    p.closeStdin();
    assert.equal((await p.exit).exitCode, 0);
    assert.equal(out, 'hello stdin');
  });

  it('layers env: image, then spec, then call', async () => {
    const r = await sbx().run(['sh', '-c', 'echo $PATH; echo $FROM_SPEC; echo $FROM_CALL; echo $HOME'], { env: { FROM_CALL: 'call' } });
    assert.deepEqual(r.stdout.trim().split('\n'), [
      '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'spec',
      'call',
      '/root',
    ]);
  });

  it('runs in the given working directory', async () => {
    assert.equal((await sbx().run(['pwd'], { cwd: '/tmp' })).stdout, '/tmp\n');
    const missing = sbx().exec(['pwd'], { cwd: '/nope' });
    await assert.rejects(missing.exit, { code: 'notFound', path: '/nope' });
  });

  it('runs as a user by name, uid, or uid:gid', async () => {
    assert.equal((await sbx().run(['sh', '-c', 'id -u; id -g; echo $HOME'], { user: 'user' })).stdout, '1000\n1000\n/home/user\n');
    assert.equal((await sbx().run(['id', '-u'], { user: '65534' })).stdout, '65534\n');
    assert.equal((await sbx().run(['sh', '-c', 'id -u; id -g'], { user: '1000:5' })).stdout, '1000\n5\n');
    await assert.rejects(sbx().exec(['true'], { user: 'ghost' }).exit, { code: 'invalidArgument', message: /ghost/ });
  });

  it('answers a missing command with 127 and the reason, as a shell would', async () => {
    const r = await sbx().run(['no-such-command']);
    assert.equal(r.exitCode, 127);
    assert.match(r.stderr, /no-such-command: command not found/);
  });

  it('kills the whole process tree on timeout', async () => {
    const r = await sbx().run(['sh', '-c', 'sleep 300 & sleep 301; echo never'], { timeoutMs: 1500 });
    assert.equal(r.timedOut, true);
    assert.equal(r.signal, 9);
    assert.equal(r.stdout, '');
    const ps = await sbx().run(['sh', '-c', 'ps -o args | grep "sleep 30[01]" || true']);
    assert.equal(ps.stdout, '', 'no sleep survived the timeout');
  });

  it('delivers a signal to a running command', async () => {
    const p = sbx().exec(['sleep', '300']);
    await p.pid;
    p.kill(15);
    const exit = await p.exit;
    assert.equal(exit.signal, 15);
  });

  it('runs 8 commands at once on one VM', async () => {
    const runs = Array.from({ length: 8 }, (_, i) => sbx().run(['sh', '-c', `sleep 0.5; echo ${i}; echo e${i} >&2; exit ${i}`]));
    const results = await Promise.all(runs);
    results.forEach((r, i) => {
      assert.equal(r.exitCode, i);
      assert.equal(r.stdout, `${i}\n`);
      assert.equal(r.stderr, `e${i}\n`);
    });
  });

  it('streams 100 MB of output without host memory growing past a bound', async () => {
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    let total = 0;
    let chunks = 0;
    const p = sbx().exec(['head', '-c', '100000000', '/dev/zero'], {
      onStdout: async (d) => {
        total += d.length;
        // A slow consumer now and then: the guest must wait, not the host buffer.
        if (++chunks % 64 === 0) await new Promise((r) => setTimeout(r, 5));
        peak = Math.max(peak, process.memoryUsage().rss);
      },
    });
    assert.equal((await p.exit).exitCode, 0);
    assert.equal(total, 100_000_000);
    const growthMiB = (peak - before) / 1024 / 1024;
    assert.ok(growthMiB < 64, `host RSS grew ${growthMiB.toFixed(1)} MiB while streaming 100 MB`);
  });
});
