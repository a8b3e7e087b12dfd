import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatReference, parseReference } from '../../src/images/reference.js';
import { ContentStore } from '../../src/images/store.js';
import { runCli } from '../fixtures/cli.js';
import { isolatedHome } from '../fixtures/home.js';
import { type LayerEntry, pushImage, pushIndex, tarball, userland } from '../fixtures/image-writer.js';
import { type FaultProxy, startProxy } from '../fixtures/proxy.js';
import { startRegistry, type TestRegistry } from '../fixtures/registry.js';

// A home of its own (sharing the image store): the server `vmbox run` starts is stopped at the end.
const home = isolatedHome();
process.env.VMBOX_HOME = home.home;

/** The CLI in this process's environment, with `env` added. */
const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { ...process.env, ...env });

describe('OCI images from a real registry', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  const run = randomBytes(4).toString('hex'); // fresh content each run: the store dedupes by digest
  const stamp = (name: string): LayerEntry => ({ name: `stamp-${name}`, body: `${run}-${name}` });

  before(async () => {
    registry = await startRegistry();
    proxy = await startProxy(registry.url);
  });
  after(async () => {
    // Forget what this file pulled (references name its registry's random port), then drop the blobs.
    const store = new ContentStore();
    for (const image of store.list()) if (image.reference.startsWith('127.0.0.1:')) store.remove(image.reference);
    for (const name of [`mybox:${run}`, `from-layout:${run}`, `saved/app:${run}`]) store.remove(formatReference(parseReference(name)));
    await cli(['image', 'prune']);
    await proxy?.stop();
    await registry?.stop();
    await home.cleanup();
  });

  it('pulls gzip and zstd layers with whiteouts and runs the image’s config', async () => {
    await pushImage(registry.url, 'test/app', run, {
      layers: [
        {
          compression: 'gzip',
          entries: [
            ...userland(),
            stamp('app'),
            { name: 'a/keep', body: 'k' },
            { name: 'a/gone', body: 'g' },
            { name: 'd/old', body: 'old' },
            { name: 'home/app/', type: 'directory', uid: 1234, gid: 1234 },
          ],
        },
        {
          compression: 'zstd',
          entries: [
            { name: 'a/.wh.gone' },
            { name: 'd/new', body: 'new' },
            { name: 'd/.wh..wh..opq' },
            { name: 'etc/hard', type: 'link', linkname: 'etc/passwd' },
          ],
        },
      ],
      config: {
        Env: ['PATH=/bin', 'GREETING=hello'],
        WorkingDir: '/d',
        User: 'app',
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: ['echo $GREETING; pwd; id -u; ls /a; ls /d'],
      },
    });
    const ref = `${registry.host}/test/app:${run}`;
    const pulled = await cli(['pull', '--insecure', ref]);
    assert.equal(pulled.status, 0, pulled.stderr);
    assert.match(pulled.stdout, /digest: sha256:[a-f0-9]{64}/);
    assert.match(pulled.stderr, /pulling 2 layers/);

    const r = await cli(['run', '--insecure', '--image', ref]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'hello\n/d\n1234\nkeep\nnew\n');
    // A given command replaces Cmd but keeps the entrypoint, as docker run does.
    assert.equal((await cli(['run', '--insecure', '--image', ref, '--', 'echo $HOME'])).stdout, '/home/app\n');

    const images = await cli(['images']);
    assert.match(images.stdout, new RegExp(`${registry.host}/test/app:${run}\\s+sha256:`));
    const inspect = JSON.parse((await cli(['image', 'inspect', ref])).stdout);
    assert.deepEqual(inspect.entrypoint, ['/bin/sh', '-c']);
    assert.equal(inspect.user, 'app');
    assert.equal(inspect.layers.length, 2);
  });

  it('picks the host platform from a multi-platform index', async () => {
    const amd = await pushImage(registry.url, 'test/multi', `${run}-amd64`, {
      layers: [{ entries: [...userland(), stamp('multi'), { name: 'platform', body: 'amd64\n' }] }],
    });
    const arm = await pushImage(registry.url, 'test/multi', `${run}-arm64`, {
      architecture: 'arm64',
      layers: [{ entries: [stamp('multi-arm'), { name: 'platform', body: 'arm64\n' }] }],
    });
    await pushIndex(registry.url, 'test/multi', run, [
      { ...arm, architecture: 'arm64' },
      { ...amd, architecture: 'amd64' },
    ]);
    const r = await cli(['run', '--insecure', '--image', `${registry.host}/test/multi:${run}`, '--', 'cat', '/platform']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'amd64\n');
    const none = await cli(['pull', '--insecure', '--platform', 'linux/s390x', `${registry.host}/test/multi:${run}`]);
    assert.equal(none.status, 1);
    assert.match(none.stderr, /no linux\/s390x image \(it offers linux\/arm64, linux\/amd64\)/);
  });

  it('speaks the Bearer token flow, with credentials from VMBOX_REGISTRY_AUTH', async () => {
    await pushImage(registry.url, 'test/private', run, { layers: [{ entries: [stamp('private')] }] });
    proxy.requireToken({ username: 'alice', password: 's3cret' });
    const ref = `${proxy.host}/test/private:${run}`;
    const denied = await cli(['pull', '--insecure', ref]);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /refused/);
    const ok = await cli(['pull', '--insecure', ref], { VMBOX_REGISTRY_AUTH: `${proxy.host}=alice:s3cret` });
    assert.equal(ok.status, 0, ok.stderr);
  });

  it('discards a blob whose bytes do not match its digest, storing nothing', async () => {
    const img = await pushImage(registry.url, 'test/corrupt', run, {
      layers: [{ entries: [stamp('corrupt'), { name: 'x', body: randomBytes(100_000) }] }],
    });
    const layer = img.layers[0]?.digest as string;
    const fresh = await startProxy(registry.url);
    try {
      fresh.corrupt(layer);
      const r = await cli(['pull', '--insecure', `${fresh.host}/test/corrupt:${run}`]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`blob ${layer} .* hashes to sha256:[a-f0-9]{64}: discarded`));
      const store = new ContentStore();
      assert.equal(store.hasBlob(layer), false);
      assert.equal(existsSync(`${store.blobPath(layer)}.partial`), false);
      assert.equal(store.get(`${fresh.host}/test/corrupt:${run}`), undefined);
    } finally {
      await fresh.stop();
    }
  });

  it('resumes a blob after the connection drops, and gives up with a clear error', async () => {
    const img = await pushImage(registry.url, 'test/flaky', run, {
      layers: [{ entries: [stamp('flaky'), { name: 'x', body: randomBytes(300_000) }] }],
    });
    const layer = img.layers[0]?.digest as string;
    const fresh = await startProxy(registry.url);
    try {
      fresh.dropAfter(layer, 100_000, 2);
      const ok = await cli(['pull', '--insecure', `${fresh.host}/test/flaky:${run}`]);
      assert.equal(ok.status, 0, ok.stderr);
      const img2 = await pushImage(registry.url, 'test/flaky', `${run}-2`, {
        layers: [{ entries: [stamp('flaky2'), { name: 'x', body: randomBytes(300_000) }] }],
      });
      fresh.dropAfter(img2.layers[0]?.digest as string, 50_000, 1000);
      const bad = await cli(['pull', '--insecure', `${fresh.host}/test/flaky:${run}-2`]);
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /downloading sha256:[a-f0-9]+ from .* failed|cannot reach/);
      assert.equal(
        bad.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('vmbox:')).length,
        1,
      );
    } finally {
      await fresh.stop();
    }
  });

  it('shares one download between two CLIs pulling the same image at once', async () => {
    const img = await pushImage(registry.url, 'test/twice', run, {
      layers: [{ entries: [...userland(), stamp('twice'), { name: 'x', body: randomBytes(2_000_000) }] }],
    });
    const fresh = await startProxy(registry.url);
    try {
      const ref = `${fresh.host}/test/twice:${run}`;
      const [a, b] = await Promise.all([cli(['pull', '--insecure', ref]), cli(['pull', '--insecure', ref])]);
      assert.equal(a.status, 0, a.stderr);
      assert.equal(b.status, 0, b.stderr);
      for (const l of img.layers) assert.equal(fresh.blobGets.get(l.digest), 1, `${l.digest} downloaded once`);
      // Two sandboxes asking for the disk at once get the same one, built once.
      const [r1, r2] = await Promise.all([
        cli(['run', '--insecure', '--image', ref, '--', 'cat', '/stamp-twice']),
        cli(['run', '--insecure', '--image', ref, '--', 'cat', '/stamp-twice']),
      ]);
      assert.equal(r1.stdout, `${run}-twice`, r1.stderr);
      assert.equal(r2.stdout, `${run}-twice`, r2.stderr);
    } finally {
      await fresh.stop();
    }
  });

  it('keeps hostile layer entries inside the image: the host is untouched', async () => {
    const hostDir = mkdtempSync(join(tmpdir(), 'vmbox-hostile-'));
    const hostPasswd = readFileSync('/etc/passwd', 'utf8');
    try {
      await pushImage(registry.url, 'test/hostile', run, {
        layers: [
          {
            entries: [
              ...userland(),
              stamp('hostile'),
              { name: '../../../../etc/vmbox-escape', body: 'escaped\n' },
              { name: '../../etc/passwd', body: 'root::0:0:owned:/:/bin/sh\n' },
              { name: 'evil', type: 'symlink', linkname: hostDir },
              { name: 'evil/pwned', body: 'pwned\n' },
            ],
          },
        ],
      });
      const r = await cli([
        'run',
        '--insecure',
        '--image',
        `${registry.host}/test/hostile:${run}`,
        '--',
        'cat',
        '/etc/vmbox-escape',
        `${hostDir}/pwned`,
      ]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'escaped\npwned\n', 'both landed inside the image');
      assert.equal(existsSync('/etc/vmbox-escape'), false);
      assert.equal(readFileSync('/etc/passwd', 'utf8'), hostPasswd, 'the host /etc/passwd is untouched');
      const inImage = await cli(['run', '--insecure', '--image', `${registry.host}/test/hostile:${run}`, '--', 'cat', '/etc/passwd']);
      assert.equal(inImage.stdout, 'root::0:0:owned:/:/bin/sh\n', 'the entry landed in the image instead');
      assert.deepEqual(readdirSync(hostDir), []);
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  it('imports a rootfs tarball, an OCI layout and a docker save archive', async () => {
    const work = mkdtempSync(join(tmpdir(), 'vmbox-import-'));
    try {
      const rootfs = join(work, 'rootfs.tar');
      writeFileSync(rootfs, await tarball([...userland(), stamp('import'), { name: 'etc/motd', body: 'from a tarball\n' }]));
      const noName = await cli(['image', 'import', rootfs]);
      assert.equal(noName.status, 1);
      assert.match(noName.stderr, /--name/);
      assert.equal((await cli(['image', 'import', rootfs, '--name', `mybox:${run}`])).status, 0);
      const fromTar = await cli(['run', '--image', `mybox:${run}`, '--', 'cat', '/etc/motd']);
      assert.equal(fromTar.stdout, 'from a tarball\n', fromTar.stderr);

      await pushImage(registry.url, 'test/export', run, {
        layers: [{ entries: [...userland(), stamp('export'), { name: 'etc/motd', body: 'exported\n' }] }],
      });
      const src = `docker://${registry.host}/test/export:${run}`;
      const skopeo = (dest: string) => spawnSync('skopeo', ['copy', '--src-tls-verify=false', src, dest], { encoding: 'utf8' });
      assert.equal(skopeo(`oci:${work}/layout:v${run}`).status, 0);
      const layout = await cli(['image', 'import', join(work, 'layout'), '--name', `from-layout:${run}`]);
      assert.equal(layout.status, 0, layout.stderr);
      const fromLayout = await cli(['run', '--image', `from-layout:${run}`, '--', 'cat', '/etc/motd']);
      assert.equal(fromLayout.stdout, 'exported\n', `status ${fromLayout.status}: ${fromLayout.stderr}`);

      const saved = skopeo(`docker-archive:${work}/save.tar:saved/app:${run}`);
      assert.equal(saved.status, 0, saved.stderr);
      const archive = await cli(['image', 'import', join(work, 'save.tar')]);
      assert.equal(archive.status, 0, archive.stderr);
      assert.match(archive.stdout, new RegExp(`docker.io/saved/app:${run}`));
      assert.equal((await cli(['run', '--image', `saved/app:${run}`, '--pull', 'never', '--', 'cat', '/etc/motd'])).stdout, 'exported\n');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('refuses to remove an image a sandbox uses, naming it, then removes and prunes it', async () => {
    await pushImage(registry.url, 'test/rmi', run, { layers: [{ entries: [...userland(), stamp('rmi')] }] });
    const ref = `${registry.host}/test/rmi:${run}`;
    assert.equal((await cli(['pull', '--insecure', ref])).status, 0);
    const name = `rmi-${run}`;
    const made = await cli(['create', '--name', name, '--image', ref, '--pull', 'never']);
    assert.equal(made.status, 0, made.stderr);
    try {
      const refused = await cli(['rmi', ref]);
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, new RegExp(`is used by sandbox ${name} \\(running\\): remove it first`));
    } finally {
      assert.equal((await cli(['rm', '--force', name])).status, 0);
    }
    const store = new ContentStore();
    const image = store.get(ref);
    assert.ok(image);
    assert.equal((await cli(['rmi', ref])).status, 0);
    assert.equal(store.get(ref), undefined);
    const pruned = await cli(['image', 'prune']);
    assert.equal(pruned.status, 0, pruned.stderr);
    assert.equal(store.hasBlob(image.manifestDigest), false);
  });
});
