import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import type { ResolvedImage } from '../images/catalog.js';
import { paths } from '../paths.js';
import { ensureAssets } from '../setup/assets.js';
import type { SandboxSpec } from '../spec/sandbox.js';
import type { TemplateInfo } from '../spec/snapshots.js';
import { diskUse, listDir } from '../util/dir.js';
import type { VmmProvider } from '../vmm/provider.js';
import { guestIdentity, Machine, OVERLAY } from './machine.js';
import { createOverlay } from './overlay.js';
import type { StateDb } from './state.js';

/** A template's files: its disk layer, its RAM (a sparse file), its device state. */
const FILES = { disk: OVERLAY, memory: 'memory', state: 'vm.state', meta: 'template.json', overlay: 'empty-overlay.qcow2' } as const;

/** Why a spec cannot start from a template (it changes what the guest booted with), or undefined when it can. */
export function warmRefusal(spec: SandboxSpec): string | undefined {
  if (spec.diskMib !== undefined) return 'diskMib changes the disk the guest boots with';
  if (spec.mounts?.some((m) => m.type !== 'tmpfs')) return 'bind and volume mounts are devices a template was not made with';
  if (spec.rootDisk) return 'a host disk image as root boots';
  if (spec.rootDir) return 'a host directory as root boots';
  if (spec.logLevel && spec.logLevel !== 'warn') return "the agent's log level is set when it boots";
  return undefined;
}

/** Whether creates build templates on their own (`VMBOX_TEMPLATES=off` leaves it to `vmbox template warm`). */
const autoTemplates = () => (process.env.VMBOX_TEMPLATES ?? 'on') !== 'off';

export interface Template {
  key: string;
  dir: string;
  disk: string;
  memory: string;
  state: string;
  /** An empty qcow2 layer over `disk`, copied as each clone's disk. */
  emptyOverlay: string;
  info: TemplateInfo;
}

/**
 * Warm start. A template is an image booted once to "agent ready", its RAM kept
 * in a file and its devices saved (a few KiB): a warm create maps that RAM
 * private (copy-on-write, so siblings share every page none of them wrote) and
 * loads the device state, in a fraction of a boot. One per (image disk, kernel,
 * agent, cpus, memory): a change of any makes a new key, so a template is never
 * stale. Its files never change once made — clones map them — and it is removed
 * only while nothing is layered on it.
 */
export class Templates {
  private readonly building = new Map<string, Promise<Template>>();
  /** Builders' VMs from the moment they exist, so a close stops them, mid-boot too. */
  private readonly spawned = new Map<string, { id: string; runDir: string; pid: number }>();
  /** Keys whose build failed lately: not tried again on every create. */
  private readonly failedAt = new Map<string, number>();

  constructor(
    private readonly db: StateDb,
    private readonly provider: VmmProvider,
  ) {}

  async key(image: ResolvedImage, spec: Pick<SandboxSpec, 'cpus' | 'memoryMib'>): Promise<string> {
    const assets = await ensureAssets();
    const inputs = {
      v: 1,
      disk: image.rootfsPath,
      digest: image.digest ?? null,
      ...guestIdentity(assets),
      cpus: spec.cpus,
      memoryMib: spec.memoryMib,
    };
    return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
  }

  /** The ready template for this image and shape, if one exists. */
  async find(image: ResolvedImage, spec: SandboxSpec): Promise<Template | undefined> {
    return this.get(await this.key(image, spec));
  }

  get(key: string): Template | undefined {
    const dir = join(paths.templates(), key);
    try {
      const info = JSON.parse(readFileSync(join(dir, FILES.meta), 'utf8')) as TemplateInfo;
      return {
        key,
        dir,
        disk: join(dir, FILES.disk),
        memory: join(dir, FILES.memory),
        state: join(dir, FILES.state),
        emptyOverlay: join(dir, FILES.overlay),
        info,
      };
    } catch {
      return undefined;
    }
  }

  /** Builds the template in the background when creates make them and none is there or under way. */
  soon(image: ResolvedImage, spec: SandboxSpec): void {
    if (!autoTemplates() || warmRefusal(spec)) return;
    this.key(image, spec)
      .then((key) => {
        // `build` joins a build under way; one that failed lately is not tried on every create.
        if (this.get(key) || Date.now() - (this.failedAt.get(key) ?? 0) < 10 * 60_000) return;
        this.build(image, spec).catch(() => {});
      })
      .catch(() => {});
  }

  /** Makes the template now (or waits for the build under way); returns it. */
  async build(image: ResolvedImage, spec: Pick<SandboxSpec, 'cpus' | 'memoryMib'>): Promise<Template> {
    const key = await this.key(image, spec);
    const ready = this.get(key);
    if (ready) return ready;
    let b = this.building.get(key);
    if (!b) {
      b = this.buildNow(key, image, spec).finally(() => this.building.delete(key));
      b.catch(() => this.failedAt.set(key, Date.now()));
      this.building.set(key, b);
    }
    return b;
  }

  /**
   * Boots the image with its RAM in a shared file, waits for the agent, saves the
   * devices (the RAM stays in the file) and ends the VM, all in a directory of its
   * own renamed into place once whole: a template that exists is a complete one.
   */
  private async buildNow(key: string, image: ResolvedImage, spec: Pick<SandboxSpec, 'cpus' | 'memoryMib'>): Promise<Template> {
    const started = Date.now();
    const assets = await ensureAssets();
    mkdirSync(paths.templates(), { recursive: true, mode: 0o700 });
    const tmp = join(paths.templates(), `${key}.building-${randomBytes(4).toString('hex')}`);
    mkdirSync(tmp, { mode: 0o700 });
    let machine: Machine | undefined;
    try {
      await createOverlay(image.rootfsPath, join(tmp, FILES.disk));
      machine = await Machine.boot(this.provider, {
        id: `tpl-${key}`,
        dir: tmp,
        spec: { image: image.name, cpus: spec.cpus, memoryMib: spec.memoryMib, env: {} },
        memoryFile: { path: join(tmp, FILES.memory), shared: true },
        onSpawn: (pid) => this.spawned.set(tmp, { id: `tpl-${key}`, runDir: tmp, pid }),
      });
      const bootMs = Date.now() - started;
      // One command before the save: the shell and its libraries are in the guest's page cache, and
      // the agent's exec path is warm, so a clone's first command does not pay for them.
      await machine.agent.exec({ argv: ['/bin/sh', '-c', 'true'] }).exit.catch(() => {});
      await machine.save(join(tmp, FILES.state), { skipSharedMemory: true });
      await prefault(join(tmp, FILES.memory));
      const info: TemplateInfo = {
        key,
        image: image.name,
        cpus: spec.cpus,
        memoryMib: spec.memoryMib,
        disk: image.rootfsPath,
        ...guestIdentity(assets),
        createdAt: Date.now(),
        bootMs,
        sizeBytes: 0,
        usedBy: [],
      };
      // Clones map these files: nothing may write them again.
      for (const f of [FILES.disk, FILES.memory, FILES.state]) chmodSync(join(tmp, f), 0o400);
      const dir = join(paths.templates(), key);
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
      // A clone's disk is a copy of this empty layer over the template's (its header names it by its final path):
      // a file copy, where qemu-img would cost a process per create.
      await createOverlay(join(dir, FILES.disk), join(dir, FILES.overlay), undefined, 'qcow2');
      // Written last: a template whose meta exists is whole.
      writeFileSync(join(dir, FILES.meta), JSON.stringify(info));
      // Templates of an earlier kernel or agent would never serve again.
      this.prune(new Set(this.list().map((t) => t.disk)), guestIdentity(assets));
      return this.get(key) as Template;
    } catch (err) {
      await machine?.stop({ timeoutMs: 1000 });
      rmSync(tmp, { recursive: true, force: true });
      throw new VmboxError('bootFailed', `the template of ${image.name} was not made: ${(err as Error).message}`, { cause: err });
    } finally {
      this.spawned.delete(tmp);
    }
  }

  list(): TemplateInfo[] {
    return listDir(paths.templates())
      .filter((k) => !k.includes('.'))
      .map((k) => this.get(k))
      .filter((t): t is Template => t !== undefined)
      .map((t) => ({ ...t.info, sizeBytes: diskUse(t.dir), usedBy: this.usedBy(t.key) }));
  }

  /** The sandboxes and snapshots whose disk (and, while a warm sandbox runs, memory) is layered on it. */
  usedBy(key: string): string[] {
    return [
      ...this.db
        .list()
        .filter((r) => !r.removing && r.origin.template === key)
        .map((r) => r.name),
      ...this.db
        .snapshots()
        .filter((s) => s.template === key)
        .map((s) => `snapshot ${s.name}`),
    ];
  }

  /** Removes a template; refused while anything is layered on it. */
  remove(key: string): void {
    const t = this.get(key);
    if (!t) throw new VmboxError('notFound', `no template ${key}: see vmbox template ls`);
    const users = this.usedBy(key);
    if (users.length) throw new VmboxError('invalidState', `template ${key} is used by ${users.join(', ')}: remove them first`);
    rmSync(t.dir, { recursive: true, force: true });
  }

  /**
   * Removes the templates nothing is layered on whose image disk is not in
   * `keepDisks`, or whose kernel or agent is not the current one (they would never
   * be used again). Returns the image disks of the templates that stay.
   */
  prune(keepDisks: Set<string>, current?: { kernel: string; agent: string }): string[] {
    const kept: string[] = [];
    for (const info of this.list()) {
      const stale =
        !keepDisks.has(info.disk) || (current !== undefined && (info.kernel !== current.kernel || info.agent !== current.agent));
      if (stale && info.usedBy.length === 0) rmSync(join(paths.templates(), info.key), { recursive: true, force: true });
      else kept.push(info.disk);
    }
    return kept;
  }

  /** After a crash: half-built templates go, with their VMs. */
  recover(): void {
    for (const name of listDir(paths.templates())) {
      if (!name.includes('.building-')) continue;
      const dir = join(paths.templates(), name);
      this.provider.adopt({ id: `tpl-${name.slice(0, name.indexOf('.'))}`, runDir: dir, pid: null })?.stop({ timeoutMs: 0 });
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The server is closing: builds under way end (a new server starts them again when needed). */
  async close(): Promise<void> {
    await Promise.all([...this.spawned.values()].map((where) => this.provider.adopt(where)?.stop({ timeoutMs: 1000 })));
  }
}

/**
 * Reads the memory file through once, so the host's page cache holds all of it,
 * holes as zero pages. A clone's first snapshot or fork reads every page of its
 * RAM (QEMU checks each for zeroes): without this the first clone to do so pays
 * for filling the cache with the holes (measured: 0.9 s against 0.1 s at 512 MiB).
 * The cache is clean and the kernel drops it under pressure.
 */
function prefault(path: string): Promise<void> {
  return new Promise((resolve) => {
    const cat = spawn('cat', [path], { stdio: 'ignore' });
    cat.once('error', () => resolve());
    cat.once('exit', () => resolve());
  });
}
