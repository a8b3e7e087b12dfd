import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { VmboxError } from '../errors.js';
import { paths } from '../paths.js';
import { ensureAssets } from '../setup/assets.js';
import type { SnapshotCreate, SnapshotInfo } from '../spec/snapshots.js';
import { diskUse, listDir } from '../util/dir.js';
import { sha256File } from '../util/sha256.js';
import { guestIdentity, OVERLAY } from './machine.js';
import type { SandboxManager } from './manager.js';
import { refuseSavingMounts } from './mounts.js';
import { exportSnapshot, importSnapshot } from './snapshot-archive.js';
import { SnapshotMemories } from './snapshot-memory.js';
import { SNAPSHOT_FILES, type SnapshotRecord, snapshotInfo } from './snapshot-record.js';

/** What taking a snapshot cost the sandbox it was taken from. */
export interface SnapshotTiming {
  /** How long the source's guest was paused (the last memory pass, the disk copy). */
  pausedMs: number;
  totalMs: number;
}

/**
 * Snapshots: a sandbox's memory, devices and disk at one instant (running or
 * paused), or its disk alone (stopped), kept under `$VMBOX_HOME/snapshots/ID`
 * and recorded in the state database. A snapshot's files never change once it
 * is ready — sandboxes and later snapshots are layered on its disk — and it is
 * removed only while nothing is.
 */
export class SandboxSnapshots {
  /** Memory files made from memory snapshots, in the background. */
  readonly memories: SnapshotMemories;

  constructor(private readonly m: SandboxManager) {
    this.memories = new SnapshotMemories(m);
  }

  dir(id: string): string {
    return paths.snapshot(id);
  }

  /**
   * Takes a snapshot. A running sandbox keeps running: its memory is copied
   * while it runs and the guest is paused only for the last pass and the copy
   * of its disk layer, so memory and disk are of one instant.
   */
  async create(
    ref: string,
    opts: SnapshotCreate & { hidden?: boolean } = {},
  ): Promise<{ snapshot: SnapshotRecord; timing: SnapshotTiming }> {
    return this.m.serially(this.m.find(ref).id, () => this.take(ref, opts));
  }

  private async take(
    ref: string,
    opts: SnapshotCreate & { hidden?: boolean },
  ): Promise<{ snapshot: SnapshotRecord; timing: SnapshotTiming }> {
    const started = Date.now();
    const sbx = this.m.find(ref);
    if (!['running', 'stopped', 'failed', 'paused'].includes(sbx.state)) {
      throw new VmboxError('invalidState', `cannot snapshot sandbox ${sbx.name}: it is ${sbx.state} (wait until it settles)`);
    }
    const id = randomBytes(8).toString('hex');
    const name = opts.name ?? `${sbx.name}-${id.slice(0, 6)}`;
    if (opts.force && this.m.db.snapshot(name)?.name === name) this.remove(name);
    const assets = await ensureAssets();
    const live = sbx.state === 'running' ? this.m.liveOf(sbx.id) : undefined;
    if (sbx.state === 'running' && !live) throw new VmboxError('invalidState', `sandbox ${sbx.name} has no VM attached: restart it`);
    const kind = live || sbx.state === 'paused' ? 'memory' : 'disk';
    if (sbx.spec.rootDir)
      throw new VmboxError('invalidState', `sandbox ${sbx.name} has a host directory as its root: it has no disk of its own to snapshot`);
    if (kind === 'memory') refuseSavingMounts(sbx.spec, sbx.name, 'be snapshotted or forked while it runs');
    const rec: SnapshotRecord = {
      id,
      name,
      kind,
      state: 'creating',
      labels: opts.labels ?? {},
      createdAt: Date.now(),
      source: { id: sbx.id, name: sbx.name },
      hidden: opts.hidden ?? false,
      spec: sbx.spec,
      image: sbx.image,
      ...guestIdentity(assets),
      parent: sbx.origin.snapshot ?? null,
      template: sbx.origin.template ?? null,
      files: [],
      integrity: opts.integrity ?? false,
    };
    this.m.db.insertSnapshot(rec); // claims the name; a crash from here on is undone by recover()
    const dir = this.dir(id);
    let pausedMs = 0;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const from = this.m.dir(sbx.id);
      if (live) {
        const vm = live.machine.vm;
        let stoppedAt = 0;
        try {
          stoppedAt = (await vm.saveLive(join(dir, SNAPSHOT_FILES.state))).stoppedAt;
          // The guest is paused from here, its disk flushed: this copy is of the instant its memory is.
          await copyFile(join(from, OVERLAY), join(dir, SNAPSHOT_FILES.disk));
        } finally {
          await vm.resume();
          // From QEMU's own STOP to the answer to `cont`: the whole time the guest stood still.
          if (stoppedAt) pausedMs = Math.max(0, Math.round(Date.now() - stoppedAt));
        }
      } else {
        if (sbx.state === 'paused') await copyFile(this.m.pausedState(sbx.id), join(dir, SNAPSHOT_FILES.state));
        await copyFile(join(from, OVERLAY), join(dir, SNAPSHOT_FILES.disk));
      }
      if (existsSync(join(from, SNAPSHOT_FILES.secrets)))
        await copyFile(join(from, SNAPSHOT_FILES.secrets), join(dir, SNAPSHOT_FILES.secrets));
      rec.files = await describeFiles(dir, rec.integrity);
      rec.state = 'ready';
      this.m.db.updateSnapshot(rec);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      this.m.db.deleteSnapshot(id);
      throw err;
    }
    if (!rec.hidden) this.m.system(sbx.id, `snapshot ${name} taken (${kind}; the guest paused ${pausedMs} ms)`);
    this.memories.soon(rec);
    return { snapshot: rec, timing: { pausedMs, totalMs: Date.now() - started } };
  }

  list(): SnapshotInfo[] {
    return this.m.db
      .snapshots()
      .filter((s) => !s.hidden)
      .map((s) => snapshotInfo(s, this.usedBy(s.id), diskUse(this.dir(s.id))));
  }

  get(ref: string): SnapshotInfo {
    const s = this.find(ref);
    return snapshotInfo(s, this.usedBy(s.id), diskUse(this.dir(s.id)));
  }

  find(ref: string): SnapshotRecord {
    const s = this.m.db.snapshot(ref);
    if (!s || s.state !== 'ready') throw new VmboxError('snapshotNotFound', `no snapshot named or with id ${ref}: see vmbox snapshot ls`);
    return s;
  }

  /** The sandboxes and snapshots layered on this one's disk. */
  usedBy(id: string): string[] {
    return [
      ...this.m.db
        .list()
        .filter((r) => !r.removing && r.origin.snapshot === id)
        .map((r) => r.name),
      ...this.m.db
        .snapshots()
        .filter((s) => s.parent === id)
        .map((s) => `snapshot ${s.name}`),
    ];
  }

  remove(ref: string): void {
    const s = this.find(ref);
    const users = this.usedBy(s.id);
    if (users.length) {
      throw new VmboxError(
        'invalidState',
        `snapshot ${s.name} is in use by ${users.join(', ')}: remove ${users.length > 1 ? 'them' : 'it'} first`,
      );
    }
    this.drop(s);
  }

  /** Records the files a snapshot's directory holds now (its memory file made), with sums when it keeps them. */
  async recordFiles(id: string): Promise<void> {
    const s = this.m.db.snapshot(id);
    if (!s) return;
    s.files = await describeFiles(this.dir(id), s.integrity);
    this.m.db.updateSnapshot(s);
  }

  private drop(s: SnapshotRecord): void {
    void this.memories.cancel(s.id);
    this.m.db.deleteSnapshot(s.id);
    rmSync(this.dir(s.id), { recursive: true, force: true });
    // A fork's copy and the parents it kept alive go when the last thing on them does.
    if (s.parent) this.dropIfUnused(s.parent);
  }

  /** Removes a fork's hidden snapshot once nothing is layered on it. */
  dropIfUnused(id: string): void {
    const s = this.m.db.snapshot(id);
    if (s?.hidden && this.usedBy(id).length === 0) this.drop(s);
  }

  /**
   * Refuses a restore this host cannot do faithfully: a memory snapshot of
   * another kernel or agent (the guest's memory is running them), or files that
   * changed since their sums were recorded.
   */
  async check(s: SnapshotRecord): Promise<void> {
    const current = guestIdentity(await ensureAssets());
    if (s.kind === 'memory' && (s.kernel !== current.kernel || s.agent !== current.agent)) {
      const what =
        s.kernel !== current.kernel
          ? `kernel ${s.kernel} (this host has ${current.kernel})`
          : `agent ${s.agent} (this host has ${current.agent})`;
      throw new VmboxError(
        'snapshotIncompatible',
        `snapshot ${s.name} was taken with guest ${what}: its memory cannot run on another; restore it where it was made, or take it again`,
      );
    }
    for (const f of s.files) {
      const path = join(this.dir(s.id), f.name);
      let size = -1;
      try {
        size = statSync(path).size;
      } catch {}
      if (size !== f.bytes) {
        throw new VmboxError(
          'snapshotCorrupt',
          `snapshot ${s.name}: ${f.name} is ${size < 0 ? 'missing' : `${size} bytes, not ${f.bytes}`}: remove the snapshot and take it again`,
        );
      }
      if (s.integrity && f.sha256 && (await sha256File(path)) !== f.sha256) {
        throw new VmboxError(
          'snapshotCorrupt',
          `snapshot ${s.name}: ${f.name} does not match its recorded sha256: remove the snapshot and take it again`,
        );
      }
    }
  }

  /** The snapshot as one tar (manifest, memory, a standalone disk) for `importArchive` on another vmbox. */
  async exportArchive(ref: string): Promise<Readable> {
    const s = this.find(ref);
    return exportSnapshot(s, this.dir(s.id));
  }

  /** A snapshot from an archive `exportArchive` wrote, checked file by file; `name` replaces the archive's. */
  async importArchive(body: Readable, opts: { name?: string } = {}): Promise<SnapshotInfo> {
    const rec = await importSnapshot(body, opts);
    try {
      this.m.db.insertSnapshot(rec);
    } catch (err) {
      rmSync(this.dir(rec.id), { recursive: true, force: true });
      throw err;
    }
    return this.get(rec.id);
  }

  /** After a crash: a snapshot still creating is undone, directories no row knows go, unused fork copies go. */
  recover(): void {
    this.memories.recover(this.m.db.snapshots().map((s) => s.id));
    for (const s of this.m.db.snapshots()) {
      if (s.state === 'creating') {
        rmSync(this.dir(s.id), { recursive: true, force: true });
        this.m.db.deleteSnapshot(s.id);
      }
    }
    for (const s of this.m.db.snapshots()) this.dropIfUnused(s.id);
    // Half-written exports and imports (dot-named) go too.
    for (const id of listDir(paths.snapshots())) if (!this.m.db.snapshot(id)) rmSync(this.dir(id), { recursive: true, force: true });
  }
}

async function describeFiles(dir: string, integrity: boolean): Promise<SnapshotRecord['files']> {
  const names = Object.values(SNAPSHOT_FILES).filter((f) => existsSync(join(dir, f)));
  return Promise.all(
    names.map(async (name) => ({
      name,
      bytes: statSync(join(dir, name)).size,
      ...(integrity ? { sha256: await sha256File(join(dir, name)) } : {}),
    })),
  );
}
