import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../fixtures/cli.js';
import { isolatedHome, type TestHome } from '../fixtures/home.js';
import { pushImage, tarball, userland } from '../fixtures/image-writer.js';
import { startRegistry, type TestRegistry } from '../fixtures/registry.js';

/** Runs one CLI command as the very first on a home that has nothing but the kernel and agent cache. */
async function first(args: string[], check: (r: { status: number | null; stdout: string; stderr: string }) => void): Promise<void> {
  const home: TestHome = isolatedHome({ empty: true });
  try {
    assert.equal(existsSync(join(home.home, 'images')), false, 'the home starts without an image store');
    const r = await runCli(args, home.env);
    check(r);
  } finally {
    await home.cleanup();
  }
}

describe('every verb works as the first command on a new home', () => {
  let registry: TestRegistry;
  const run = randomBytes(4).toString('hex');
  let work: string;

  before(async () => {
    registry = await startRegistry();
    work = mkdtempSync(join(tmpdir(), 'vmbox-fresh-'));
  });
  after(async () => {
    await registry?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('vmbox images lists the built-in base image', async () => {
    await first(['images'], (r) => {
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^REFERENCE\s+DIGEST\s+SIZE\s+CREATED\n/);
      assert.match(r.stdout, /^base\s+\(built-in\)/m);
    });
  });

  it('vmbox pull', async () => {
    await pushImage(registry.url, 'test/fresh', run, { layers: [{ entries: [{ name: 'stamp', body: run }] }] });
    await first(['pull', '--insecure', `${registry.host}/test/fresh:${run}`], (r) => {
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /digest: sha256:[a-f0-9]{64}/);
    });
  });

  it('vmbox image import of a rootfs tarball', async () => {
    const rootfs = join(work, 'rootfs.tar');
    writeFileSync(rootfs, await tarball([...userland(), { name: 'stamp', body: run }]));
    await first(['image', 'import', rootfs, '--name', `fresh:${run}`], (r) => {
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^docker.io/library/fresh:${run}\ndigest: sha256:[a-f0-9]{64}\n$`));
    });
  });

  it('vmbox run (the base image is built by the server on first use)', async () => {
    await first(['run', '--', 'echo', 'hello'], (r) => {
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'hello\n');
    });
  });
});
