import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Images, Sandbox } from '../../src/index.js';
import { runCli as cli } from '../fixtures/cli.js';
import { isolatedHome, waitFor } from '../fixtures/home.js';
import { pushImage, pushIndex, tarball, userland } from '../fixtures/image-writer.js';
import { freePort, startRegistry, type TestRegistry } from '../fixtures/registry.js';

const vmbox = fileURLToPath(new URL('../../vmbox', import.meta.url));

// Both homes start empty (only the kernel and agent are shared): the server's
// images and disks are its own, and the client's home must stay untouched.
const server = isolatedHome({ empty: true });
const client = isolatedHome({ empty: true });

describe('a remote server: VMBOX_URL + VMBOX_TOKEN, images and sandboxes on the server’s machine', () => {
  let registry: TestRegistry;
  let serve: ChildProcess;
  let remote: NodeJS.ProcessEnv;
  const run = randomBytes(4).toString('hex');
  const stamp = (name: string) => ({ name: `stamp-${name}`, body: `${run}-${name}` });
  const remoteCli = (args: string[], env: NodeJS.ProcessEnv = {}) => cli(args, { ...remote, ...env });

  before(async () => {
    registry = await startRegistry();
    const port = await freePort();
    serve = spawn(vmbox, ['serve', '--listen', `127.0.0.1:${port}`], { env: server.env, stdio: 'ignore' });
    const tokenFile = join(server.home, 'token');
    const up = await waitFor(async () => {
      if (!existsSync(tokenFile)) return false;
      const token = readFileSync(tokenFile, 'utf8').trim();
      try {
        return (await fetch(`http://127.0.0.1:${port}/v1/health`, { headers: { authorization: `Bearer ${token}` } })).ok;
      } catch {
        return false;
      }
    }, 60_000);
    assert.ok(up, 'vmbox serve --listen answered');
    remote = {
      ...client.env,
      VMBOX_URL: `http://127.0.0.1:${port}`,
      VMBOX_TOKEN: readFileSync(tokenFile, 'utf8').trim(),
    };
  });
  after(async () => {
    serve?.kill('SIGTERM');
    await registry?.stop();
    await server.cleanup();
    await client.cleanup();
  });

  it('pulls, lists and runs an image on the server, with progress here', async () => {
    await pushImage(registry.url, 'test/remote', run, {
      layers: [{ entries: [...userland(), stamp('remote')] }],
      config: { Env: ['PATH=/bin'], Cmd: ['cat', `/stamp-remote`] },
    });
    const ref = `${registry.host}/test/remote:${run}`;
    const pulled = await remoteCli(['pull', '--insecure', ref]);
    assert.equal(pulled.status, 0, pulled.stderr);
    assert.match(pulled.stderr, /pulling 1 layer\n/);
    assert.match(pulled.stdout, /digest: sha256:[a-f0-9]{64}/);
    // The image is in the server's store, and nothing was written on this side.
    assert.match(readFileSync(join(server.home, 'images', 'index.json'), 'utf8'), new RegExp(`test/remote:${run}`));
    assert.equal(existsSync(join(client.home, 'images')), false);
    assert.equal(client.serverPid(), undefined, 'no local server was started');

    const images = await remoteCli(['images']);
    assert.equal(images.status, 0, images.stderr);
    assert.match(images.stdout, /^base\s+\(built-in\)/m);
    assert.match(images.stdout, new RegExp(`${registry.host}/test/remote:${run}\\s+sha256:`));

    // --pull always, --platform and --insecure travel to the server with the create.
    const r = await remoteCli(['run', '--image', ref, '--pull', 'always', '--platform', 'linux/amd64', '--insecure']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${run}-remote`);
    assert.match(r.stderr, /pulling 1 layer/, 'a pull with policy always shows its progress');
    assert.equal(existsSync(join(client.home, 'sandboxes')), false);
  });

  it('pulls on the server for a create, per the pull policy, platform and insecure options of the SDK', async () => {
    await pushImage(registry.url, 'test/create', run, { layers: [{ entries: [...userland(), stamp('create')] }] });
    const ref = `${registry.host}/test/create:${run}`;
    const conn = { url: remote.VMBOX_URL, token: remote.VMBOX_TOKEN };
    await assert.rejects(Sandbox.create({ image: ref, pull: 'never', ...conn }), {
      code: 'imageNotFound',
      message: /pull policy is 'never'/,
    });
    await assert.rejects(Sandbox.create({ image: ref, ...conn }), { message: /does not speak TLS/ });
    const sbx = await Sandbox.create({ image: ref, pull: 'always', platform: 'linux/amd64', insecure: true, ...conn });
    try {
      assert.equal((await sbx.commands.run(`cat /stamp-create`)).stdout, `${run}-create`);
      const listed = await Images.list(conn);
      assert.deepEqual(listed.find((i) => i.reference === ref)?.usedBy, [sbx.name]);
    } finally {
      await sbx.kill();
      sbx.close();
    }
  });

  it('takes --platform to the server, and VMBOX_INSECURE_REGISTRIES from the client', async () => {
    const amd = await pushImage(registry.url, 'test/plat', `${run}-amd64`, { layers: [{ entries: [stamp('amd')] }] });
    const arm = await pushImage(registry.url, 'test/plat', `${run}-arm64`, {
      architecture: 'arm64',
      layers: [{ entries: [stamp('arm')] }],
    });
    await pushIndex(registry.url, 'test/plat', run, [
      { ...amd, architecture: 'amd64' },
      { ...arm, architecture: 'arm64' },
    ]);
    const ref = `${registry.host}/test/plat:${run}`;
    const pulled = await remoteCli(['pull', '--platform', 'linux/arm64', ref], { VMBOX_INSECURE_REGISTRIES: registry.host });
    assert.equal(pulled.status, 0, pulled.stderr);
    const inspect = JSON.parse((await remoteCli(['image', 'inspect', ref])).stdout);
    assert.equal(inspect.platform, 'linux/arm64');
    assert.equal(inspect.digest, arm.digest);
  });

  it('says a plain-HTTP registry does not speak TLS, and how to allow it', async () => {
    await pushImage(registry.url, 'test/tls', run, { layers: [{ entries: [stamp('tls')] }] });
    const started = Date.now();
    const r = await remoteCli(['pull', `${registry.host}/test/tls:${run}`]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`${registry.host} does not speak TLS .*--insecure.*VMBOX_INSECURE_REGISTRIES=${registry.host}`));
    assert.doesNotMatch(r.stderr, /SSL|ssl3_get_record|wrong version number/);
    assert.ok(Date.now() - started < 30_000, 'the answer comes without retrying');
  });

  it('uploads an image to import: a rootfs tarball, streamed', async () => {
    const work = mkdtempSync(join(tmpdir(), 'vmbox-remote-import-'));
    try {
      const rootfs = join(work, 'rootfs.tar');
      writeFileSync(rootfs, await tarball([...userland(), stamp('upload')]));
      const imported = await remoteCli(['image', 'import', rootfs, '--name', `uploaded:${run}`]);
      assert.equal(imported.status, 0, imported.stderr);
      assert.match(imported.stdout, new RegExp(`docker.io/library/uploaded:${run}\ndigest: sha256:`));
      assert.match(readFileSync(join(server.home, 'images', 'index.json'), 'utf8'), new RegExp(`uploaded:${run}`));
      const missing = await remoteCli(['image', 'import', join(work, 'nope.tar'), '--name', 'x:1']);
      assert.equal(missing.status, 1);
      assert.match(missing.stderr, /nope\.tar does not exist/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('keeps the disk of a stopped sandbox through rmi --force and prune, until the sandbox is removed', async () => {
    await pushImage(registry.url, 'test/held', run, {
      layers: [{ entries: [...userland(), stamp('held'), { name: 'x', body: randomBytes(50_000) }] }],
    });
    const ref = `${registry.host}/test/held:${run}`;
    const name = `held-${run}`;
    const made = await remoteCli(['create', '--name', name, '--image', ref, '--insecure']);
    assert.equal(made.status, 0, made.stderr);
    const { digest } = JSON.parse((await remoteCli(['image', 'inspect', ref])).stdout) as { digest: string };
    const disk = join(server.home, 'images', 'rootfs', `${digest.slice(7)}.ext4`);
    const manifest = join(server.home, 'images', 'blobs', 'sha256', digest.slice(7));
    assert.ok(existsSync(disk) && existsSync(manifest));
    try {
      assert.equal((await remoteCli(['stop', name])).status, 0);
      const refused = await remoteCli(['rmi', ref]);
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, new RegExp(`is used by sandbox ${name} \\(stopped\\): remove it first`));

      const forced = await remoteCli(['rmi', '--force', ref]);
      assert.equal(forced.status, 0, forced.stderr);
      assert.match(forced.stderr, new RegExp(`its disk stays until ${name} is removed`));
      assert.doesNotMatch((await remoteCli(['images'])).stdout, new RegExp(`test/held:${run}`));
      const pruned = await remoteCli(['image', 'prune']);
      assert.equal(pruned.status, 0, pruned.stderr);
      assert.ok(existsSync(disk) && existsSync(manifest), 'prune keeps what a sandbox’s record points at');
      // The sandbox still starts from its image's disk.
      const started = await remoteCli(['start', name]);
      assert.equal(started.status, 0, started.stderr);
      const cat = await remoteCli(['exec', name, '--', 'cat', '/stamp-held']);
      assert.equal(cat.stdout, `${run}-held`, cat.stderr);
    } finally {
      assert.equal((await remoteCli(['rm', '--force', name])).status, 0);
    }
    const swept = await remoteCli(['image', 'prune']);
    assert.equal(swept.status, 0, swept.stderr);
    assert.equal(existsSync(disk) || existsSync(manifest), false, 'once the sandbox is gone, its disk and blobs go');
  });
});
