import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { buildOnce } from '../../src/setup/cache.js';
import { buildInitramfs } from '../../src/setup/cpio.js';
import { ensureKernel } from '../../src/setup/kernel.js';

describe('kernel build failure', () => {
  const home = mkdtempSync(join(tmpdir(), 'vmbox-home-'));
  after(() => rmSync(home, { recursive: true, force: true }));

  it('fails with a clear error naming the log, and caches nothing', async () => {
    const bogus = join(home, 'linux-source.tar.xz');
    writeFileSync(bogus, 'not a tarball');
    const env = { VMBOX_HOME: process.env.VMBOX_HOME, VMBOX_KERNEL_SOURCE: process.env.VMBOX_KERNEL_SOURCE };
    process.env.VMBOX_HOME = home;
    process.env.VMBOX_KERNEL_SOURCE = bogus;
    try {
      await assert.rejects(ensureKernel(), { code: 'kernelBuildFailed', message: /kernel build failed; see .*\.log/ });
      const left = readdirSync(join(home, 'cache', 'kernel'));
      assert.ok(
        left.every((f) => f.endsWith('.log')),
        `only the log remains: ${left}`,
      );
    } finally {
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    assert.ok(existsSync(home));
  });
});

describe('initramfs writer', () => {
  it('writes newc entries with the device node /dev/console', () => {
    const cpio = gunzipSync(buildInitramfs([{ name: 'dev/console', mode: 0o20600, rdev: { major: 5, minor: 1 } }])).toString('latin1');
    assert.ok(cpio.startsWith('070701'));
    // mode 020600, rdevmajor 5, rdevminor 1
    assert.equal(cpio.slice(14, 22), '00002180');
    assert.equal(cpio.slice(78, 86), '00000005');
    assert.equal(cpio.slice(86, 94), '00000001');
    assert.ok(cpio.includes('dev/console\0'));
    assert.ok(cpio.includes('TRAILER!!!\0'));
    assert.equal(cpio.length % 4, 0);
  });
});

describe('cached builds', () => {
  const root = mkdtempSync(join(tmpdir(), 'vmbox-cache-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('build once when asked twice at once: the second waits for the first and finds it built', async () => {
    const dir = join(root, 'entry');
    let builds = 0;
    const build = async (tmp: string) => {
      builds++;
      await new Promise((r) => setTimeout(r, 200));
      mkdirSync(tmp, { recursive: true });
      writeFileSync(join(tmp, 'done'), 'x');
    };
    const [a, b] = await Promise.all([buildOnce(dir, 'done', build), buildOnce(dir, 'done', build)]);
    assert.equal(a, dir);
    assert.equal(b, dir);
    assert.equal(builds, 1);
    assert.equal(existsSync(`${dir}.lock`), false, 'the lock is released');
  });
});
