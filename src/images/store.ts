import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { paths } from '../paths.js';

/** One image a reference points at, as recorded in the store's index. */
export interface StoredImage {
  reference: string;
  manifestDigest: string;
  configDigest: string;
  layers: Array<{ digest: string; mediaType: string; size: number }>;
  size: number;
  created?: string;
  pulledAt: string;
}

const DIGEST = /^sha256:([a-f0-9]{64})$/;

/**
 * Content-addressed store under `$VMBOX_HOME/images`: blobs by digest, an index
 * of references. Every write is a temp file renamed into place, so a crash
 * never leaves a half blob that counts as present.
 */
export class ContentStore {
  readonly root = paths.images();

  blobPath(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m) throw new VmboxError('invalidArgument', `unsupported digest '${digest}': vmbox stores sha256 digests`);
    return join(this.root, 'blobs', 'sha256', m[1] as string);
  }

  hasBlob(digest: string): boolean {
    return existsSync(this.blobPath(digest));
  }

  readBlob(digest: string): Buffer {
    return readFileSync(this.blobPath(digest));
  }

  /** Stores bytes under their digest, checking it. */
  putBlob(digest: string, data: Buffer): void {
    const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    if (actual !== digest) throw new VmboxError('ioError', `content of ${digest} hashes to ${actual}: refusing to store it`);
    atomicWrite(this.blobPath(digest), data);
  }

  tmpDir(): string {
    const dir = join(this.root, 'tmp');
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  private indexPath(): string {
    return join(this.root, 'index.json');
  }

  list(): StoredImage[] {
    try {
      return JSON.parse(readFileSync(this.indexPath(), 'utf8')) as StoredImage[];
    } catch {
      return [];
    }
  }

  get(reference: string): StoredImage | undefined {
    return this.list().find((i) => i.reference === reference);
  }

  record(image: StoredImage): void {
    const rest = this.list().filter((i) => i.reference !== image.reference);
    atomicWrite(this.indexPath(), `${JSON.stringify([...rest, image], null, 2)}\n`);
  }

  remove(reference: string): boolean {
    const all = this.list();
    const rest = all.filter((i) => i.reference !== reference);
    atomicWrite(this.indexPath(), `${JSON.stringify(rest, null, 2)}\n`);
    return rest.length !== all.length;
  }
}

export function atomicWrite(path: string, data: string | Buffer): void {
  mkdirSync(join(path, '..'), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}
