import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { VmboxError } from '../errors.js';
import { runCommand } from '../setup/run-command.js';
import { withFileLock } from '../util/file-lock.js';
import { type Compression, layerCompression, sniffCompression } from './media.js';
import { ContentStore, type StoredImage } from './store.js';
import { applyLayer } from './unpack.js';

/** Virtual size of a sandbox's disk unless the image needs more: sparse, so free until written. */
export const DEFAULT_DISK_BYTES = 2 * 1024 ** 3;
const building = new Map<string, Promise<string>>();

export function rootfsPath(image: StoredImage): string {
  return join(new ContentStore().root, 'rootfs', `${image.manifestDigest.replace('sha256:', '')}.ext4`);
}

/**
 * The image's layers flattened into one raw ext4 file, built once per manifest
 * and shared read-only by every sandbox of the image. No loop mounts: layers are
 * unpacked into a staging directory and `mkfs.ext4 -d` copies it in.
 */
export function ensureRootfs(image: StoredImage): Promise<string> {
  const out = rootfsPath(image);
  if (existsSync(out)) return Promise.resolve(out);
  let p = building.get(out);
  if (!p) {
    mkdirSync(join(out, '..'), { recursive: true });
    // One build per disk, across processes too: a second asker waits and then finds it.
    p = withFileLock(`${out}.lock`, async () => (existsSync(out) ? out : build(image, out))).finally(() => building.delete(out));
    building.set(out, p);
  }
  return p;
}

async function build(image: StoredImage, out: string): Promise<string> {
  const store = new ContentStore();
  const stage = join(store.tmpDir(), `rootfs-${process.pid}-${Date.now()}`);
  const tmpDisk = `${out}.tmp-${process.pid}`;
  try {
    mkdirSync(stage, { recursive: true });
    for (const layer of image.layers) {
      await applyLayer(stage, decompressed(store.blobPath(layer.digest), layerCompression(layer.mediaType)));
    }
    const used = Number((await du(stage)) * 1024);
    const size = Math.max(DEFAULT_DISK_BYTES, Math.ceil((used * 1.5 + 256 * 1024 ** 2) / 1024 ** 2) * 1024 ** 2);
    mkdirSync(join(out, '..'), { recursive: true });
    writeFileSync(tmpDisk, '');
    await runCommand('truncate', ['-s', String(size), tmpDisk]);
    await runCommand('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', stage, tmpDisk]);
    renameSync(tmpDisk, out);
    return out;
  } catch (err) {
    rmSync(tmpDisk, { force: true });
    if (err instanceof VmboxError) throw err;
    throw new VmboxError('ioError', `building the disk of ${image.reference} failed: ${(err as Error).message}`, { cause: err });
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function decompressed(path: string, known: Compression | undefined): Readable {
  // Large chunks: zlib and tar parsing pay per chunk, and layers are big.
  const src = createReadStream(path, { highWaterMark: 1024 * 1024 });
  let kind = known;
  const out = new PassThrough();
  src.once('readable', () => {
    const head = src.read(4) as Buffer | null;
    kind ??= head ? sniffCompression(head) : 'none';
    if (head) src.unshift(head);
    const stage = kind === 'gzip' ? createGunzip({ chunkSize: 256 * 1024 }) : kind === 'zstd' ? zstdStream() : new PassThrough();
    src.pipe(stage).pipe(out);
    stage.on('error', (err) => out.destroy(new VmboxError('ioError', `layer ${path}: ${err.message}`)));
  });
  src.on('error', (err) => out.destroy(err));
  return out;
}

/** fzstd's streaming decoder as a Node transform. */
function zstdStream(): Transform {
  let push: (chunk: Uint8Array) => void = () => {};
  const d = new Decompress((chunk) => push(chunk));
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      push = (c) => this.push(Buffer.from(c));
      try {
        d.push(chunk);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}

async function du(dir: string): Promise<number> {
  let kb = 0;
  await runCommand('du', ['-sk', dir], {
    onLine: (l) => {
      kb = Number(l.split('\t')[0]) || kb;
    },
  });
  return kb;
}
