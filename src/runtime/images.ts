import { createWriteStream, existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VmboxError } from '../errors.js';
import {
  builtinConfig,
  builtinDisk,
  builtinImages,
  checkImageName,
  isBuiltin,
  type ResolvedImage,
  resolveImage,
} from '../images/catalog.js';
import { importImage } from '../images/import.js';
import type { ImageManifest } from '../images/media.js';
import { hostPlatform, imageConfig, type PullOptions, pullImage } from '../images/pull.js';
import { formatReference, parseReference } from '../images/reference.js';
import type { Progress } from '../images/registry.js';
import { rootfsPath } from '../images/rootfs.js';
import { ContentStore, type StoredImage } from '../images/store.js';
import type { CreateQuery, ImageDetail, ImageSummary, PruneResult, PullBody, PullProgress, RemoveResult } from '../spec/images.js';
import { listDir } from '../util/dir.js';
import type { StateDb } from './state.js';

/**
 * The server's images: pull, list, inspect, import, remove, prune, and the
 * image a new sandbox starts from. Data a sandbox's record points at (its
 * disk, its manifest's blobs) is never deleted while that record exists.
 */
export class ImageService {
  private readonly store = new ContentStore();
  /** When each pull, import or create's image resolution under way began: what they write is not recorded yet. */
  private readonly inFlight = new Map<symbol, number>();

  /** Runs `fn` as work that writes blobs and disks prune must not take. */
  private async writing<T>(fn: () => Promise<T>): Promise<T> {
    const key = Symbol();
    this.inFlight.set(key, Date.now());
    try {
      return await fn();
    } finally {
      this.inFlight.delete(key);
    }
  }

  constructor(private readonly db: StateDb) {}

  /** The image of a new sandbox, pulled per the create's options. */
  resolve(name: string, opts: CreateQuery = {}): Promise<ResolvedImage> {
    return this.writing(() => resolveImage(name, pullOptions(name, opts)));
  }

  /** Throws for a name that is neither a built-in image nor a valid reference. */
  checkReference(reference: string): void {
    checkImageName(reference);
  }

  /** Pulls (per the policy) and answers what the image runs with; built-in images are built if need be. */
  pull(body: PullBody, onProgress: (m: PullProgress) => void = () => {}): Promise<ImageDetail> {
    return this.writing(() => this.pullNow(body, onProgress));
  }

  private async pullNow(body: PullBody, onProgress: (m: PullProgress) => void): Promise<ImageDetail> {
    if (isBuiltin(body.reference)) {
      await resolveImage(body.reference);
      return this.inspect(body.reference);
    }
    const image = await pullImage(body.reference, {
      ...pullOptions(body.reference, body),
      credentials: body.auth,
      onManifest: (layers) =>
        onProgress({ type: 'manifest', layers: layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size })) }),
      onProgress: throttled((e) => onProgress({ type: 'progress', ...e })),
    });
    return detail(image);
  }

  list(): ImageSummary[] {
    const builtins = builtinImages().flatMap((reference): ImageSummary[] => {
      const disk = builtinDisk(reference);
      const st = disk && existsSync(disk) ? statSync(disk) : undefined;
      // base is listed before its first build (the first run makes it in seconds);
      // the others, half a minute or more of building each, once something built them.
      if (!st && reference !== 'base') return [];
      return [
        {
          reference,
          digest: '',
          size: st ? st.blocks * 512 : 0, // sparse: what it really takes
          created: st?.mtime.toISOString(),
          builtin: true,
          usedBy: this.usedBy(reference),
        },
      ];
    });
    const pulled = this.store.list().map((i) => ({
      reference: i.reference,
      digest: i.manifestDigest,
      size: i.size,
      created: i.created,
      builtin: false,
      usedBy: this.usedBy(i.reference),
    }));
    return [...builtins, ...pulled];
  }

  inspect(reference: string): ImageDetail {
    const config = isBuiltin(reference) ? builtinConfig[reference] : undefined;
    if (config) return { reference, digest: '', platform: hostPlatform(), layers: [], ...config };
    return detail(this.find(reference));
  }

  /** Imports an uploaded rootfs tarball, OCI layout (as a tar) or docker save archive, streamed to disk first. */
  import(body: Readable, name?: string): Promise<ImageDetail> {
    return this.writing(() => this.importNow(body, name));
  }

  private async importNow(body: Readable, name?: string): Promise<ImageDetail> {
    const tmp = join(this.store.tmpDir(), `upload-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.tar`);
    try {
      await pipeline(body, createWriteStream(tmp));
      return detail(await importImage(tmp, name, 'the uploaded archive'));
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  /** Forgets a reference; refuses while sandboxes were made from it, unless forced (their data stays until they go). */
  remove(reference: string, opts: { force?: boolean } = {}): RemoveResult {
    if (isBuiltin(reference)) throw new VmboxError('invalidArgument', `${reference} is built in: it cannot be removed`);
    const image = this.find(reference);
    const holders = this.db.list().filter((r) => !r.removing && r.image.name === image.reference);
    if (holders.length > 0 && !opts.force) {
      const names = holders.map((r) => `${r.name} (${r.state})`).join(', ');
      throw new VmboxError(
        'invalidState',
        `${image.reference} is used by sandbox${holders.length > 1 ? 'es' : ''} ${names}: remove ${holders.length > 1 ? 'them' : 'it'} first (vmbox rm), or pass --force to untag the image (its disk stays until ${holders.length > 1 ? 'they are' : 'it is'} removed)`,
      );
    }
    this.store.remove(image.reference);
    return { reference: image.reference, keptFor: holders.map((r) => r.name) };
  }

  /** Set by the runtime: removes templates over disks not in the set; returns the disks the remaining ones are over. */
  templatesPrune?: (keepDisks: Set<string>) => string[];

  /** Deletes blobs and disks that neither an image nor a sandbox's or snapshot's record refers to. */
  prune(): PruneResult {
    const images = this.store.list();
    const keep = new Set(images.flatMap((i) => [i.manifestDigest, i.configDigest, ...i.layers.map((l) => l.digest)]));
    const keepDisks = new Set(images.map((i) => rootfsPath(i)));
    for (const rec of [...this.db.list(), ...this.db.snapshots()]) {
      keepDisks.add(rec.image.rootfsPath);
      if (rec.image.digest) for (const d of this.manifestBlobs(rec.image.digest)) keep.add(d);
    }
    // Templates of images no longer kept go first (unless something is layered on them, which keeps their disk).
    for (const disk of this.templatesPrune?.(keepDisks) ?? []) keepDisks.add(disk);
    // Indexes of multi-platform images are not recorded, so they go.
    let freedBytes = 0;
    let deleted = 0;
    // What a pull, import or create under way wrote since it began is not recorded yet: it stays.
    const since = Math.min(...this.inFlight.values());
    const sweep = (dir: string, kept: (name: string, path: string) => boolean) => {
      for (const name of listDir(dir)) {
        const path = join(dir, name);
        if (kept(name, path) || name.endsWith('.lock')) continue;
        try {
          const st = statSync(path);
          if (st.mtimeMs >= since - 1000) continue;
          freedBytes += st.blocks * 512;
          rmSync(path, { force: true });
          deleted++;
        } catch {}
      }
    };
    sweep(join(this.store.root, 'blobs', 'sha256'), (hex) => keep.has(`sha256:${hex}`));
    sweep(join(this.store.root, 'rootfs'), (_name, path) => keepDisks.has(path));
    return { deleted, freedBytes };
  }

  /** A manifest's own digest, its config's and its layers'. */
  private manifestBlobs(digest: string): string[] {
    try {
      const m = JSON.parse(this.store.readBlob(digest).toString('utf8')) as ImageManifest;
      return [digest, m.config.digest, ...m.layers.map((l) => l.digest)];
    } catch {
      return [digest];
    }
  }

  private usedBy(reference: string): string[] {
    return this.db
      .list()
      .filter((r) => !r.removing && r.image.name === reference)
      .map((r) => r.name);
  }

  private find(reference: string): StoredImage {
    let key: string;
    try {
      key = formatReference(parseReference(reference));
    } catch {
      throw new VmboxError('imageNotFound', `no image ${reference} here: see vmbox images`);
    }
    const image = this.store.get(key);
    if (!image) throw new VmboxError('imageNotFound', `no image ${key} here: vmbox pull ${reference}`);
    return image;
  }
}

/**
 * At most one byte count per layer every 100 ms (a registry's chunks are a few
 * KiB: unthrottled, a large layer sends thousands of lines); a layer's end always goes.
 */
function throttled(fn: Progress): Progress {
  const last = new Map<string, number>();
  return (e) => {
    const now = Date.now();
    if (!e.done && now - (last.get(e.digest) ?? 0) < 100) return;
    last.set(e.digest, now);
    fn(e);
  };
}

/** `insecure` names the registry of this reference (a built-in image has none). */
function pullOptions(
  reference: string,
  o: { policy?: CreateQuery['pull']; pull?: CreateQuery['pull']; platform?: string; insecure?: boolean },
): PullOptions {
  let insecure: string[] = [];
  if (o.insecure) {
    try {
      insecure = [parseReference(reference).registry];
    } catch {}
  }
  return { policy: o.policy ?? o.pull, platform: o.platform, insecure };
}

function detail(image: StoredImage): ImageDetail {
  const c = imageConfig(image);
  return {
    reference: image.reference,
    digest: image.manifestDigest,
    created: c.created,
    platform: `${c.os ?? '?'}/${c.architecture ?? '?'}`,
    env: c.config?.Env ?? [],
    entrypoint: c.config?.Entrypoint ?? [],
    cmd: c.config?.Cmd ?? [],
    workingDir: c.config?.WorkingDir ?? '',
    user: c.config?.User ?? '',
    layers: image.layers,
  };
}
