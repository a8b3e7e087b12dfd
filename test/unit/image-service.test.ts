import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import type { VmboxError } from '../../src/errors.js';
import { resolveImage } from '../../src/images/catalog.js';
import { ImageService } from '../../src/runtime/images.js';
import { type SandboxRecord, StateDb } from '../../src/runtime/state.js';
import { authFromEnv, insecureFromEnv, registryOf } from '../../src/sdk/registry-env.js';
import { tarball } from '../fixtures/image-writer.js';

// A home of its own, empty: the service must make whatever folders it needs.
const home = mkdtempSync(join(tmpdir(), 'vmbox-images-'));
process.env.VMBOX_HOME = home;
after(() => rmSync(home, { recursive: true, force: true }));

const record = (name: string, image: SandboxRecord['image'], state: SandboxRecord['state']): SandboxRecord => ({
  id: `id-${name}`,
  name,
  spec: { image: image.name, cpus: 1, memoryMib: 128, env: {}, name },
  image,
  state,
  reason: null,
  pid: null,
  createdAt: Date.now(),
  startedAt: null,
  stoppedAt: null,
  removing: false,
  owner: null,
  origin: { start: 'cold' },
  apiKey: null,
});

describe('the image service', () => {
  const db = new StateDb(join(home, 'state.db'));
  const images = new ImageService(db);
  after(() => db.close());

  it('imports an uploaded rootfs tarball into an empty home, and lists base first', async () => {
    const tar = await tarball([{ name: 'etc/motd', body: 'hi\n' }]);
    const image = await images.import(Readable.from([tar]), 'held:1');
    assert.equal(image.reference, 'docker.io/library/held:1');
    const list = images.list();
    assert.equal(list[0]?.reference, 'base');
    assert.equal(list[0]?.builtin, true);
    assert.equal(list[1]?.reference, 'docker.io/library/held:1');
    await assert.rejects(images.import(Readable.from([tar])), /plain root filesystem tarball: give it a name with --name/);
  });

  it('keeps what a stopped sandbox’s record points at through rmi --force and prune', async () => {
    const resolved = await resolveImage('held:1', { policy: 'never' });
    assert.ok(resolved.digest && existsSync(resolved.rootfsPath));
    const detail = images.inspect('held:1');
    const blobs = [detail.digest, ...detail.layers.map((l) => l.digest)];
    db.insert(record('keeper', resolved, 'stopped'));
    assert.deepEqual(images.list()[1]?.usedBy, ['keeper']);
    assert.throws(
      () => images.remove('held:1'),
      (err: VmboxError) => err.code === 'invalidState' && /used by sandbox keeper \(stopped\): remove it first/.test(err.message),
    );
    assert.deepEqual(images.remove('held:1', { force: true }), { reference: 'docker.io/library/held:1', keptFor: ['keeper'] });
    const stray = join(home, 'images', 'rootfs', 'stray.ext4');
    writeFileSync(stray, 'x');
    images.prune();
    assert.equal(existsSync(stray), false, 'what nothing refers to goes');
    assert.ok(existsSync(resolved.rootfsPath), 'the disk stays');
    for (const d of blobs) assert.ok(existsSync(join(home, 'images', 'blobs', 'sha256', d.slice(7))), `${d} stays`);
    db.delete('id-keeper');
    assert.ok(images.prune().deleted >= 4, 'the disk, manifest, config and layer go with the last sandbox');
    assert.equal(existsSync(resolved.rootfsPath), false);
  });

  it('leaves what an import under way has written, unrecorded yet, to a prune meanwhile', async () => {
    const tar = await tarball([{ name: 'etc/motd', body: 'slow\n' }]);
    const body = new PassThrough();
    const importing = images.import(body, 'slow:1');
    await new Promise((r) => setTimeout(r, 50));
    const partial = join(home, 'images', 'blobs', 'sha256', 'f'.repeat(64));
    writeFileSync(partial, 'a blob of the import, not recorded yet');
    images.prune();
    assert.ok(existsSync(partial), 'kept while the import runs');
    body.end(tar);
    await importing;
    images.prune();
    assert.equal(existsSync(partial), false, 'and goes once nothing under way can claim it');
  });

  it('refuses to remove a built-in image', () => {
    assert.throws(() => images.remove('base'), /base is built in/);
  });
});

describe('what the SDK takes from the environment for a registry', () => {
  it('finds the registry a reference names, by Docker’s rule', () => {
    assert.equal(registryOf('alpine'), 'docker.io');
    assert.equal(registryOf('org/app:1'), 'docker.io');
    assert.equal(registryOf('127.0.0.1:5000/app:1'), '127.0.0.1:5000');
    assert.equal(registryOf('localhost/app'), 'localhost');
    assert.equal(registryOf('ghcr.io/org/app@sha256:abc'), 'ghcr.io');
  });

  it('reads VMBOX_INSECURE_REGISTRIES and VMBOX_REGISTRY_AUTH', () => {
    process.env.VMBOX_INSECURE_REGISTRIES = 'a.test:5000,localhost';
    process.env.VMBOX_REGISTRY_AUTH = 'a.test:5000=alice:s3:cret,b.test=bob:x';
    try {
      assert.equal(insecureFromEnv('a.test:5000/x'), true);
      assert.equal(insecureFromEnv('b.test/x'), false);
      assert.deepEqual(authFromEnv('a.test:5000/x:1'), { username: 'alice', password: 's3:cret' });
      assert.equal(authFromEnv('c.test/x'), undefined);
    } finally {
      delete process.env.VMBOX_INSECURE_REGISTRIES;
      delete process.env.VMBOX_REGISTRY_AUTH;
    }
  });
});
