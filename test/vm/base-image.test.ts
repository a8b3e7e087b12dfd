import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sharedSandbox } from './helpers.js';

/** Shell that waits (5 s at most) until something listens on the port (hex, as /proc/net/tcp writes it). */
const listening = (hexPort: string) =>
  `i=0; until grep -q ':${hexPort} 00000000:0000 0A' /proc/net/tcp; do i=$((i+1)); [ $i -gt 50 ] && exit 9; sleep 0.1; done`;

describe('the base image', () => {
  const sbx = sharedSandbox();

  // Debian's busybox-static 1.35 segfaulted on any `wget -T` (exit 139): its
  // build leaves the timeout out but still parses -T into a NULL pointer.
  it('busybox wget -T fails a refused connection with a normal error, not a crash', async () => {
    const r = await sbx().run(['wget', '-T', '5', '-O', '/dev/null', 'http://127.0.0.1:1/']);
    assert.equal(r.signal, undefined, `wget died of signal ${r.signal}: ${r.stderr}`);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /Connection refused/);
  });

  it('busybox wget -T gives up on a server that never answers', async () => {
    // nc accepts the connection and says nothing (its stdin stays open, so it
    // does not hang up either): only the timeout ends the wait.
    const r = await sbx().run([
      'sh',
      '-c',
      `{ sleep 10 | nc -l -p 8081; } >/dev/null 2>&1 & ${listening('1F91')}; wget -T 2 -O /dev/null http://127.0.0.1:8081/`,
    ]);
    assert.equal(r.signal, undefined, `wget died of signal ${r.signal}: ${r.stderr}`);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /timed out/);
  });

  it('busybox wget -T downloads from a server in the guest', async () => {
    const r = await sbx().run([
      'sh',
      '-c',
      'mkdir -p /tmp/www && echo hello > /tmp/www/x && httpd -p 127.0.0.1:8080 -h /tmp/www && wget -q -T 5 -O - http://127.0.0.1:8080/x',
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'hello\n');
  });
});
