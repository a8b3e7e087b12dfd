import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { extract, pack } from 'tar-stream';
import { VmboxError } from '../errors.js';
import { paths } from '../paths.js';
import { SANDBOX_NAME, validateSpec } from '../spec/sandbox.js';
import { sha256File } from '../util/sha256.js';
import { SNAPSHOT_FILES, type SnapshotRecord } from './snapshot-record.js';

const run = promisify(execFile);
const MANIFEST = 'snapshot.json';
/** What an archive may hold: nothing else is written, whatever the tar says. */
const MEMBERS = new Set<string>([MANIFEST, SNAPSHOT_FILES.state, SNAPSHOT_FILES.disk]);

/**
 * A snapshot as one tar, to move it to another vmbox: its manifest, its memory
 * and devices, and its disk flattened into one standalone qcow2 (the image's
 * files and every layer under it included), so an import needs nothing else.
 * Each file's sha256 is in the manifest and checked on import.
 */
export async function exportSnapshot(s: SnapshotRecord, dir: string): Promise<Readable> {
  if (s.spec.secrets?.length) {
    throw new VmboxError(
      'invalidArgument',
      `snapshot ${s.name} holds secrets (their placeholders and CA are in its memory): it is not exported`,
    );
  }
  const tmp = join(paths.snapshots(), `.export-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  try {
    const disk = join(tmp, SNAPSHOT_FILES.disk);
    await run('qemu-img', ['convert', '-O', 'qcow2', join(dir, SNAPSHOT_FILES.disk), disk]);
    const files = [
      ...(s.kind === 'memory' ? [{ name: SNAPSHOT_FILES.state, path: join(dir, SNAPSHOT_FILES.state) }] : []),
      { name: SNAPSHOT_FILES.disk, path: disk },
    ];
    const described = await Promise.all(
      files.map(async (f) => ({ name: f.name, bytes: statSync(f.path).size, sha256: await sha256File(f.path) })),
    );
    const manifest = {
      format: 1,
      name: s.name,
      kind: s.kind,
      labels: s.labels,
      createdAt: s.createdAt,
      spec: s.spec,
      image: { name: s.image.name, digest: s.image.digest, config: s.image.config },
      kernel: s.kernel,
      agent: s.agent,
      files: described,
    };
    const tar = pack();
    (async () => {
      try {
        tar.entry({ name: MANIFEST }, JSON.stringify(manifest, null, 2));
        for (const [i, f] of files.entries()) {
          await pipeline(createReadStream(f.path), tar.entry({ name: f.name, size: described[i]?.bytes }));
        }
        tar.finalize();
      } catch (err) {
        // Ends the response with the error: a reader sees a cut archive, never a whole-looking one.
        tar.destroy(err as Error);
      }
    })();
    // tar-stream's pack is not a Node stream: carried through one, its error destroying this one too.
    const out = new PassThrough();
    pipeline(tar, out)
      .catch(() => {})
      .finally(() => rmSync(tmp, { recursive: true, force: true }));
    return out;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Reads an archive `exportSnapshot` wrote into a new snapshot directory, checks
 * every file against the manifest and the disk for a backing file (a hostile
 * archive could otherwise show the guest a host file), and returns its record
 * (state `ready`, under a new id) for the caller to insert.
 */
export async function importSnapshot(body: Readable, opts: { name?: string }): Promise<SnapshotRecord> {
  const id = randomBytes(8).toString('hex');
  const tmp = join(paths.snapshots(), `.import-${id}`);
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  try {
    const ex = extract();
    ex.on('entry', (header, stream, next) => {
      const name = header.name.replace(/^\.\//, '');
      if (header.type !== 'file' || !MEMBERS.has(name)) {
        stream.on('error', () => {});
        stream.resume();
        next(new VmboxError('invalidArgument', `not a vmbox snapshot archive: unexpected entry ${JSON.stringify(header.name)}`));
        return;
      }
      pipeline(stream, createWriteStream(join(tmp, name), { mode: 0o600 })).then(() => next(), next);
    });
    await pipeline(body, ex);
    let m: ArchiveManifest;
    try {
      m = JSON.parse(readFileSync(join(tmp, MANIFEST), 'utf8')) as ArchiveManifest;
    } catch {
      throw new VmboxError('invalidArgument', `not a vmbox snapshot archive: ${MANIFEST} is missing or not JSON`);
    }
    if (m.format !== 1 || (m.kind !== 'memory' && m.kind !== 'disk') || !Array.isArray(m.files)) {
      throw new VmboxError('invalidArgument', `not a vmbox snapshot archive this vmbox reads (format ${m.format})`);
    }
    const spec = validateSpec(m.spec);
    const needed = m.kind === 'memory' ? [SNAPSHOT_FILES.state, SNAPSHOT_FILES.disk] : [SNAPSHOT_FILES.disk];
    for (const name of needed) {
      const f = m.files.find((x) => x.name === name);
      if (!f) throw new VmboxError('invalidArgument', `the archive's manifest does not list ${name}`);
      const path = join(tmp, name);
      let size = -1;
      try {
        size = statSync(path).size;
      } catch {}
      if (size !== f.bytes || (await sha256File(path)) !== f.sha256) {
        throw new VmboxError(
          'snapshotCorrupt',
          `the archive's ${name} does not match its manifest (${size < 0 ? 'missing' : 'size or sha256 differs'}): export it again`,
        );
      }
    }
    await refuseBackingFile(join(tmp, SNAPSHOT_FILES.disk));
    const name = opts.name ?? m.name;
    if (!new RegExp(SANDBOX_NAME).test(name)) throw new VmboxError('invalidArgument', `snapshot name ${JSON.stringify(name)} is not valid`);
    const dir = join(paths.snapshots(), id);
    rmSync(join(tmp, MANIFEST));
    renameSync(tmp, dir);
    return {
      id,
      name,
      kind: m.kind,
      state: 'ready',
      labels: m.labels ?? {},
      createdAt: m.createdAt ?? Date.now(),
      source: null,
      hidden: false,
      spec,
      // The disk is standalone: the image's disk is in it, this path is only a record.
      image: {
        name: m.image.name,
        ...(m.image.digest ? { digest: m.image.digest } : {}),
        rootfsPath: join(dir, SNAPSHOT_FILES.disk),
        config: m.image.config,
      },
      kernel: m.kernel,
      agent: m.agent,
      parent: null,
      template: null,
      files: m.files.filter((f) => needed.includes(f.name as (typeof needed)[number])),
      integrity: true,
    };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

interface ArchiveManifest {
  format: number;
  name: string;
  kind: 'memory' | 'disk';
  labels?: Record<string, string>;
  createdAt?: number;
  spec: unknown;
  image: SnapshotRecord['image'];
  kernel: string;
  agent: string;
  files: { name: string; bytes: number; sha256: string }[];
}

async function refuseBackingFile(disk: string): Promise<void> {
  let info: { format?: string; 'backing-filename'?: string; 'data-file'?: string };
  try {
    info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', 'qcow2', disk])).stdout);
  } catch {
    throw new VmboxError('invalidArgument', "the archive's disk is not a qcow2 image");
  }
  if (info['backing-filename'] || info['data-file']) {
    throw new VmboxError('invalidArgument', "the archive's disk names a file outside it (a backing or data file): refused");
  }
}
