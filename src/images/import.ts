import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { extract } from 'tar-stream';
import { VmboxError } from '../errors.js';
import { sha256File } from '../util/sha256.js';
import { type Descriptor, type ImageIndex, type ImageManifest, isIndex, MediaType, sniffCompression } from './media.js';
import { hostPlatform } from './pull.js';
import { formatReference, parseReference } from './reference.js';
import { ContentStore, type StoredImage } from './store.js';
import { applyLayer } from './unpack.js';

function readHead(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(n);
    return b.subarray(0, readSync(fd, b, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/** Whether a tar holds an image (docker save or OCI layout) rather than a root filesystem: a scan of names only. */
async function isImageArchive(path: string): Promise<boolean> {
  const ex = extract();
  createReadStream(path).pipe(ex);
  for await (const entry of ex) {
    const name = entry.header.name.replace(/^\.\//, '');
    entry.resume();
    if (name === 'manifest.json' || name === 'oci-layout' || name === 'index.json') {
      ex.destroy();
      return true;
    }
  }
  return false;
}

/** Copies a file into the store under its digest (verified), returning its descriptor. */
async function addFile(store: ContentStore, path: string, mediaType: string, expected?: string): Promise<Descriptor> {
  const digest = `sha256:${await sha256File(path)}`;
  if (expected && expected !== digest)
    throw new VmboxError('ioError', `${path} hashes to ${digest}, not ${expected}: the image is corrupt`);
  if (!store.hasBlob(digest)) {
    const tmp = `${store.blobPath(digest)}.import-${process.pid}`;
    mkdirSync(dirname(tmp), { recursive: true }); // a new home has no blob folder yet
    copyFileSync(path, tmp);
    renameSync(tmp, store.blobPath(digest));
  }
  return { mediaType, digest, size: statSync(path).size };
}

function addJson(store: ContentStore, value: unknown): Descriptor & { bytes: Buffer } {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  store.putBlob(digest, bytes);
  return { mediaType: '', digest, size: bytes.length, bytes };
}

function record(store: ContentStore, name: string, manifest: ImageManifest, manifestDigest: string, created?: string): StoredImage {
  const image: StoredImage = {
    reference: formatReference(parseReference(name)),
    manifestDigest,
    configDigest: manifest.config.digest,
    layers: manifest.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size })),
    size: manifest.layers.reduce((n, l) => n + l.size, 0),
    created,
    pulledAt: new Date().toISOString(),
  };
  store.record(image);
  return image;
}

/** Writes an OCI manifest for a config and layers already in the store. */
function writeManifest(store: ContentStore, config: Descriptor, layers: Descriptor[]): { manifest: ImageManifest; digest: string } {
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
    layers,
  };
  return { manifest, digest: addJson(store, manifest).digest };
}

/**
 * Imports an image from a plain rootfs tarball, an OCI image layout directory,
 * or a `docker save` archive. `name` is required for a rootfs tarball.
 */
export async function importImage(path: string, name?: string, shown = path): Promise<StoredImage> {
  if (!existsSync(path)) throw new VmboxError('notFound', `${shown} does not exist`);
  const store = new ContentStore();
  if (statSync(path).isDirectory()) return importLayout(store, path, name);
  // A tar archive: a docker save (or OCI layout) inside, or else a plain root filesystem.
  const head = readHead(path, 4);
  if (sniffCompression(head) === 'none' && (await isImageArchive(path))) {
    const dir = mkdtempSync(join(store.tmpDir(), 'import-'));
    try {
      await applyLayer(dir, createReadStream(path));
      // docker save writes manifest.json (with full tags) and, lately, an OCI layout too: prefer the tags.
      if (existsSync(join(dir, 'manifest.json'))) return await importDockerSave(store, dir, name);
      if (existsSync(join(dir, 'index.json'))) return await importLayout(store, dir, name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (!name)
    throw new VmboxError('invalidArgument', `${shown} is a plain root filesystem tarball: give it a name with --name (e.g. mybox:1)`);
  const layer = await addFile(
    store,
    path,
    sniffCompression(head) === 'gzip' ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar',
  );
  const created = new Date().toISOString();
  const config = addJson(store, {
    architecture: hostPlatform().split('/')[1],
    os: 'linux',
    created,
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
  });
  const { manifest, digest } = writeManifest(store, config, [layer]);
  return record(store, name, manifest, digest, created);
}

async function importLayout(store: ContentStore, dir: string, name?: string): Promise<StoredImage> {
  const blob = (d: string) => join(dir, 'blobs', ...d.split(':'));
  let index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as ImageIndex;
  let desc = index.manifests[0];
  // Follow nested indexes to the host's platform.
  while (desc && isIndex(desc.mediaType)) {
    index = JSON.parse(readFileSync(blob(desc.digest), 'utf8')) as ImageIndex;
    const [os, arch] = hostPlatform().split('/');
    desc = index.manifests.find((m) => m.platform?.os === os && m.platform?.architecture === arch) ?? index.manifests[0];
  }
  if (!desc) throw new VmboxError('invalidArgument', `${dir}: the OCI layout's index lists no image`);
  const refName = name ?? desc.annotations?.['org.opencontainers.image.ref.name'];
  if (!refName) throw new VmboxError('invalidArgument', `${dir}: the image has no name: pass --name`);
  const manifestDesc = await addFile(store, blob(desc.digest), desc.mediaType, desc.digest);
  const manifest = JSON.parse(store.readBlob(manifestDesc.digest).toString('utf8')) as ImageManifest;
  await addFile(store, blob(manifest.config.digest), manifest.config.mediaType, manifest.config.digest);
  for (const l of manifest.layers) await addFile(store, blob(l.digest), l.mediaType, l.digest);
  const created = (JSON.parse(store.readBlob(manifest.config.digest).toString('utf8')) as { created?: string }).created;
  // A bare tag (e.g. "1.0") names the image only together with a repository.
  const reference = refName.includes(':') || refName.includes('/') ? refName : `imported:${refName}`;
  return record(store, reference, manifest, manifestDesc.digest, created);
}

async function importDockerSave(store: ContentStore, dir: string, name?: string): Promise<StoredImage> {
  const entries = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Array<{
    Config: string;
    RepoTags?: string[];
    Layers: string[];
  }>;
  const first = entries[0];
  if (!first) throw new VmboxError('invalidArgument', 'the docker save archive lists no image');
  const refName = name ?? first.RepoTags?.[0];
  if (!refName) throw new VmboxError('invalidArgument', 'the docker save archive has no tag: pass --name');
  const config = await addFile(store, join(dir, first.Config), MediaType.dockerConfig);
  const layers: Descriptor[] = [];
  for (const l of first.Layers) {
    const gz = sniffCompression(readHead(join(dir, l), 4)) === 'gzip';
    layers.push(
      await addFile(
        store,
        join(dir, l),
        gz ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar',
      ),
    );
  }
  const { manifest, digest } = writeManifest(store, config, layers);
  const created = (JSON.parse(readFileSync(join(dir, first.Config), 'utf8')) as { created?: string }).created;
  return record(store, refName, manifest, digest, created);
}
