import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SpecError, VmboxError } from '../errors.js';
import { paths } from '../paths.js';
import type { Mount } from '../spec/mounts.js';
import { VOLUME_NAME } from '../spec/mounts.js';
import type { VolumeCreate, VolumeInfo } from '../spec/volumes.js';
import type { StateDb, VolumeRecord } from './state.js';

/** A disk volume's capacity when a create names none. */
const DEFAULT_DISK_MIB = 1024;

/**
 * Named volumes, recorded in the state database (the name is claimed there
 * first) and kept when their sandboxes go; one is removed only while no
 * sandbox mounts it. A directory volume (`$VMBOX_HOME/volumes/NAME/data`) is
 * shared by any number of sandboxes at once; a disk volume (`NAME/disk.ext4`,
 * a sparse ext4 image) has one writer at a time.
 */
export class Volumes {
  constructor(
    private readonly db: StateDb,
    /** The sandboxes whose spec mounts each volume, by volume name. */
    private readonly mountedBy: (name: string) => string[],
  ) {}

  dataDir(name: string): string {
    return join(paths.volumes(), name, 'data');
  }

  diskPath(name: string): string {
    return join(paths.volumes(), name, 'disk.ext4');
  }

  /** A volume's record (its kind), or undefined. */
  record(name: string): VolumeRecord | undefined {
    return this.db.volume(name);
  }

  create(req: VolumeCreate): VolumeInfo {
    if (!new RegExp(VOLUME_NAME).test(req.name)) throw new SpecError('name', `must match ${VOLUME_NAME}, got ${JSON.stringify(req.name)}`);
    const kind = req.kind ?? 'directory';
    if (kind === 'directory' && req.sizeMib !== undefined) throw new SpecError('sizeMib', 'only a disk volume has a size (--kind disk)');
    if (kind === 'disk' && req.quotaMib !== undefined) throw new SpecError('quotaMib', 'a disk volume is bounded by its size already');
    const rec: VolumeRecord = {
      name: req.name,
      kind,
      ...(kind === 'disk' ? { sizeMib: req.sizeMib ?? DEFAULT_DISK_MIB } : {}),
      ...(req.quotaMib !== undefined ? { quotaMib: req.quotaMib } : {}),
      labels: req.labels ?? {},
      createdAt: Date.now(),
    };
    this.db.insertVolume(rec);
    try {
      if (kind === 'disk') makeExt4(this.diskPath(rec.name), rec.sizeMib as number);
      else {
        mkdirSync(this.dataDir(rec.name), { recursive: true, mode: 0o755 });
        if (rec.quotaMib) {
          makeExt4(this.quotaPath(rec.name), rec.quotaMib);
          this.mountQuota(rec);
        }
      }
    } catch (err) {
      this.db.deleteVolume(rec.name);
      rmSync(join(paths.volumes(), rec.name), { recursive: true, force: true });
      throw err;
    }
    return this.info(rec);
  }

  list(): VolumeInfo[] {
    return this.db.volumes().map((v) => this.info(v));
  }

  get(name: string): VolumeInfo {
    return this.info(this.find(name));
  }

  remove(name: string): void {
    const rec = this.find(name);
    const users = this.mountedBy(rec.name);
    if (users.length)
      throw new VmboxError(
        'invalidState',
        `volume ${rec.name} is mounted by ${users.join(', ')}: remove ${users.length > 1 ? 'them' : 'it'} first`,
      );
    // The quota's filesystem first: deleting under a mount that stayed would leave its loop device.
    if (rec.quotaMib) unmount(this.dataDir(rec.name));
    this.db.deleteVolume(rec.name);
    rmSync(join(paths.volumes(), rec.name), { recursive: true, force: true });
  }

  /** Mounts the filesystems of volumes with a quota that are not mounted (a host reboot unmounts them). */
  recover(): void {
    for (const v of this.db.volumes()) {
      if (!v.quotaMib || isMounted(this.dataDir(v.name))) continue;
      try {
        this.mountQuota(v);
      } catch {} // said again when a sandbox mounts it
    }
  }

  /** Before a sandbox mounts it: a volume with a quota has its filesystem mounted on the host. */
  ready(name: string): void {
    const v = this.db.volume(name);
    if (v?.quotaMib && !isMounted(this.dataDir(name))) this.mountQuota(v);
  }

  private quotaPath(name: string): string {
    return join(paths.volumes(), name, 'quota.ext4');
  }

  /**
   * The quota is a filesystem of that size, loop-mounted on the host where the
   * volume's files live: the host kernel says ENOSPC at the budget, whoever writes.
   */
  private mountQuota(v: VolumeRecord): void {
    try {
      execFileSync('mount', ['-o', 'loop,nosuid,nodev', this.quotaPath(v.name), this.dataDir(v.name)], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (err) {
      const why = String((err as { stderr?: Buffer }).stderr ?? err).trim();
      throw new VmboxError('hostSetup', `volume ${v.name}'s quota is a filesystem the host mounts (a loop device, as root): ${why}`);
    }
  }

  /** Removes every volume no sandbox mounts; returns their names. */
  prune(): string[] {
    const gone = this.db.volumes().filter((v) => this.mountedBy(v.name).length === 0);
    for (const v of gone) this.remove(v.name);
    return gone.map((v) => v.name);
  }

  /** What a create's volume mounts need, checked before anything is made: `existing` ones exist, `create` ones do not. */
  check(mounts: Mount[]): void {
    for (const [i, m] of mounts.entries()) {
      if (m.type !== 'volume') continue;
      const exists = this.db.volume(m.source) !== undefined;
      if (m.mode === 'existing' && !exists)
        throw new SpecError(
          `mounts.${i}.source`,
          `no volume named ${m.source}: make it with vmbox volume create ${m.source}, or mount with mode ensure-exists`,
        );
      if (m.mode === 'create' && exists)
        throw new SpecError(
          `mounts.${i}.source`,
          `a volume named ${m.source} exists already (mode create wants a new one): pick another name, or mode ensure-exists`,
        );
    }
  }

  /** Makes the volumes a create's mounts want that are not there yet (after `check`); the names it made. */
  ensure(mounts: Mount[]): string[] {
    const made: string[] = [];
    for (const m of mounts)
      if (m.type === 'volume' && !this.db.volume(m.source)) {
        this.create({ name: m.source });
        made.push(m.source);
      }
    return made;
  }

  private find(name: string): VolumeRecord {
    const rec = this.db.volume(name);
    if (!rec) throw new VmboxError('notFound', `no volume named ${name}: see vmbox volume ls`);
    return rec;
  }

  private info(v: VolumeRecord): VolumeInfo {
    const path = v.kind === 'disk' ? this.diskPath(v.name) : this.dataDir(v.name);
    return { ...v, sizeBytes: treeSize(path), path, usedBy: this.mountedBy(v.name) };
  }
}

/** A sparse ext4 image of `sizeMib`; its inode tables are left for the guest to use as they fill (uninit_bg). */
function makeExt4(path: string, sizeMib: number): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
  execFileSync('truncate', ['-s', `${sizeMib}M`, path]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', 'vmbox-volume', path], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Host disk a directory tree takes (du), 0 when it cannot be read. */
function treeSize(dir: string): number {
  try {
    return Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\t')[0]) * 1024;
  } catch {
    return 0;
  }
}

/** Whether a filesystem is mounted at `dir` (as the kernel names it: symlinks resolved, spaces as \040). */
function isMounted(dir: string): boolean {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return false;
  }
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => (l.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))) === real);
}

/** Unmounts the quota's filesystem; throws (leaving everything) when it cannot. */
function unmount(dir: string): void {
  if (!isMounted(dir)) return;
  try {
    execFileSync('umount', [dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const why = String((err as { stderr?: Buffer }).stderr ?? err).trim();
    throw new VmboxError('invalidState', `cannot unmount the quota of ${dir}: ${why}`);
  }
}
