import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isolatedHome, type TestHome } from '../fixtures/home.js';
import { soak } from '../fixtures/soak.js';

/*
 * The soak, short (the benchmark runs it in full: BENCH_ONLY=soak): nothing a
 * sandbox or a command leaves behind in the server or under the home.
 */
let t: TestHome;

before(() => {
  t = isolatedHome();
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
});

after(async () => {
  await t.cleanup();
});

describe('soak (short)', () => {
  it('creates and removes sandboxes, runs execs from concurrent clients, and comes back to where it started', async () => {
    const f = await soak(t, { sandboxes: 8, execs: 400, clients: 4 });
    console.log(JSON.stringify(f));
    assert.equal(f.failures, 0);
    // Slack: the server's heap settles in steps; descriptors are exact but for a few sockets of clients just gone.
    assert.ok(f.after.rssMiB - f.before.rssMiB < 48, `server RSS ${f.before.rssMiB} → ${f.after.rssMiB} MiB`);
    assert.ok(f.after.fds - f.before.fds <= 2, `server descriptors ${f.before.fds} → ${f.after.fds}`);
    assert.ok(f.after.diskBytes - f.before.diskBytes < 4 * 1024 * 1024, `disk under the home ${f.before.diskBytes} → ${f.after.diskBytes}`);
  });
});
