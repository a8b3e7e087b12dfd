import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureAssets } from '../setup/assets.js';
import type { VmHandle } from '../vmm/provider.js';
import type { SandboxManager } from './manager.js';
import { SNAPSHOT_FILES, type SnapshotRecord } from './snapshot-record.js';

const WORK = 'materializing';
const TMP_MEMORY = `${SNAPSHOT_FILES.memory}.tmp`;

/**
 * Makes a memory snapshot's memory a file, in the background after it is taken:
 * a QEMU whose RAM is a shared file loads the snapshot's whole state without
 * running it, saves its devices alone and ends. From then on a restore maps that
 * file privately (copy-on-write) and loads only the devices: faster than loading
 * the whole state, and the copies of one snapshot share its memory. Until then,
 * and if it fails, restores load the whole state. A fork's hidden snapshot gets
 * one only when the fork makes enough copies to be worth the wait.
 */
export class SnapshotMemories {
  private readonly work = new Map<string, { vm?: VmHandle; done: Promise<void> }>();

  constructor(private readonly m: SandboxManager) {}

  /** Starts making the file; `hidden` snapshots (a fork's) only when the fork asks (`force`). */
  soon(s: SnapshotRecord, force = false): void {
    if (s.kind !== 'memory' || (s.hidden && !force) || this.work.has(s.id)) return;
    const job: { vm?: VmHandle; done: Promise<void> } = { done: Promise.resolve() };
    job.done = this.make(s, job)
      .catch(() => this.clean(s.id))
      .finally(() => this.work.delete(s.id));
    this.work.set(s.id, job);
  }

  /** Waits for the memory file of `id`, if one is being made (tests and benchmarks). */
  async settled(id: string): Promise<void> {
    await this.work.get(id)?.done;
  }

  private async make(s: SnapshotRecord, job: { vm?: VmHandle }): Promise<void> {
    const dir = this.m.snapshots.dir(s.id);
    const runDir = join(dir, WORK);
    mkdirSync(runDir, { recursive: true });
    const assets = await ensureAssets();
    const vm = await this.m.provider.start({
      id: `mem-${s.id}`,
      cpus: s.spec.cpus,
      memoryMib: s.spec.memoryMib,
      accel: assets.accel.accel,
      kernelPath: assets.kernelPath,
      initrdPath: assets.initrd,
      rootDisk: { path: join(dir, SNAPSHOT_FILES.disk), format: 'qcow2' },
      runDir,
      ...(assets.jailLauncher ? { jailLauncher: assets.jailLauncher } : {}),
      memoryFile: { path: join(dir, TMP_MEMORY), shared: true },
      restoreFrom: join(dir, SNAPSHOT_FILES.state),
      loadOnly: true,
    });
    job.vm = vm;
    try {
      await vm.save(join(runDir, SNAPSHOT_FILES.devices), { skipSharedMemory: true });
    } finally {
      await vm.stop({ timeoutMs: 1000 });
    }
    // Removed meanwhile: nothing to record.
    if (!this.m.db.snapshot(s.id)) return this.clean(s.id);
    renameSync(join(dir, TMP_MEMORY), join(dir, SNAPSHOT_FILES.memory));
    renameSync(join(runDir, SNAPSHOT_FILES.devices), join(dir, SNAPSHOT_FILES.devices));
    rmSync(runDir, { recursive: true, force: true });
    await this.m.snapshots.recordFiles(s.id);
  }

  /** Stops the work on a snapshot being removed. */
  async cancel(id: string): Promise<void> {
    const job = this.work.get(id);
    if (!job) return;
    await job.vm?.stop({ timeoutMs: 0 });
    await job.done;
  }

  private clean(id: string): void {
    const dir = this.m.snapshots.dir(id);
    rmSync(join(dir, WORK), { recursive: true, force: true });
    rmSync(join(dir, TMP_MEMORY), { force: true });
  }

  /** After a crash: a half-made memory file and its QEMU go (restores load the whole state). */
  recover(ids: string[]): void {
    for (const id of ids) {
      if (!existsSync(join(this.m.snapshots.dir(id), WORK))) continue;
      this.m.provider.adopt({ id: `mem-${id}`, runDir: join(this.m.snapshots.dir(id), WORK), pid: null })?.stop({ timeoutMs: 0 });
      this.clean(id);
    }
  }

  /** The server is closing: work under way ends (its snapshots keep loading their whole state). */
  async close(): Promise<void> {
    await Promise.all([...this.work.values()].map((j) => j.vm?.stop({ timeoutMs: 1000 })));
  }
}
