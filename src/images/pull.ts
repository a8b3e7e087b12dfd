import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { VmboxError } from '../errors.js';
import { withFileLock } from '../util/file-lock.js';
import { type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, isIndex, MANIFEST_ACCEPT } from './media.js';
import { formatReference, type ImageReference, parseReference } from './reference.js';
import { type Progress, RegistryClient, type RegistryOptions } from './registry.js';
import { ContentStore, type StoredImage } from './store.js';

export type PullPolicy = 'if-missing' | 'always' | 'never';

export interface PullOptions extends RegistryOptions {
  /** `os/arch[/variant]`; default this host's, linux/amd64 on x86-64. */
  platform?: string;
  policy?: PullPolicy;
  onProgress?: Progress;
  /** Called once the manifest is known, with the layers to fetch. */
  onManifest?: (layers: Descriptor[]) => void;
}

const inflight = new Map<string, Promise<StoredImage>>();

export function hostPlatform(): string {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : process.arch;
  return `linux/${arch}`;
}

/** Pulls an image into the content store (once, however many callers ask at the same time). */
export function pullImage(reference: string, opts: PullOptions = {}): Promise<StoredImage> {
  const ref = parseReference(reference);
  const key = formatReference(ref);
  const store = new ContentStore();
  const policy = opts.policy ?? 'if-missing';
  const have = store.get(key);
  if (have && policy !== 'always') return Promise.resolve(have);
  if (policy === 'never') {
    return Promise.reject(
      new VmboxError('imageNotFound', `${key} is not pulled and the pull policy is 'never': run vmbox pull ${reference}`),
    );
  }
  let p = inflight.get(key);
  if (!p) {
    p = doPull(ref, store, opts).finally(() => inflight.delete(key));
    inflight.set(key, p);
  }
  return p;
}

async function doPull(ref: ImageReference, store: ContentStore, opts: PullOptions): Promise<StoredImage> {
  const client = new RegistryClient(opts);
  const top = await client.manifest(ref, ref.digest ?? (ref.tag as string), MANIFEST_ACCEPT);
  let manifestBytes = top.body;
  let manifestDigest = top.digest;
  let parsed = JSON.parse(top.body.toString('utf8')) as ImageIndex | ImageManifest;
  if (isIndex(top.mediaType) || isIndex(parsed.mediaType) || 'manifests' in parsed) {
    const chosen = choosePlatform(parsed as ImageIndex, opts.platform ?? hostPlatform(), formatReference(ref));
    const m = await client.manifest(ref, chosen.digest, MANIFEST_ACCEPT);
    store.putBlob(top.digest, top.body);
    manifestBytes = m.body;
    manifestDigest = m.digest;
    parsed = JSON.parse(m.body.toString('utf8')) as ImageManifest;
  }
  const manifest = parsed as ImageManifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new VmboxError('invalidArgument', `${formatReference(ref)}: the manifest is neither an OCI nor a Docker v2 image manifest`);
  }
  opts.onManifest?.(manifest.layers);
  const blobs = [manifest.config, ...manifest.layers];
  // Three downloads at a time: enough to fill a link, polite to the registry.
  let next = 0;
  const worker = async () => {
    while (next < blobs.length) {
      const d = blobs[next++] as Descriptor;
      const path = store.blobPath(d.digest);
      mkdirSync(dirname(path), { recursive: true });
      // Another process pulling the same blob: wait for it rather than download twice.
      await withFileLock(`${path}.lock`, async () => {
        if (!store.hasBlob(d.digest)) await client.downloadBlob(ref, d.digest, path, opts.onProgress);
      });
      opts.onProgress?.({ digest: d.digest, received: d.size, total: d.size, done: true });
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  store.putBlob(manifestDigest, manifestBytes);
  const config = JSON.parse(store.readBlob(manifest.config.digest).toString('utf8')) as ImageConfig;
  const image: StoredImage = {
    reference: formatReference(ref),
    manifestDigest,
    configDigest: manifest.config.digest,
    layers: manifest.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size })),
    size: manifest.layers.reduce((n, l) => n + l.size, 0),
    created: config.created,
    pulledAt: new Date().toISOString(),
  };
  store.record(image);
  return image;
}

function choosePlatform(index: ImageIndex, platform: string, name: string): Descriptor {
  const [os, arch, variant] = platform.split('/');
  const match = index.manifests.find(
    (m) => m.platform?.os === os && m.platform?.architecture === arch && (!variant || m.platform?.variant === variant),
  );
  if (!match) {
    const offered = index.manifests.map((m) => [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join('/'));
    throw new VmboxError('imageNotFound', `${name} has no ${platform} image (it offers ${offered.join(', ') || 'none'}): pass --platform`);
  }
  return match;
}

export function imageConfig(image: StoredImage): ImageConfig {
  return JSON.parse(new ContentStore().readBlob(image.configDigest).toString('utf8')) as ImageConfig;
}
