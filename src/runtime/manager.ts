import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SpecError, VmboxError } from '../errors.js';
import type { SandboxNetwork } from '../network/service.js';
import { paths } from '../paths.js';
import type { CreateQuery } from '../spec/images.js';
import { HIDDEN_VALUE } from '../spec/network.js';
import { type Patch, type SandboxSpec, validateSpec } from '../spec/sandbox.js';
import type { LogEntry, LogSource, Metrics, SandboxEvent, SandboxInfo, SandboxState } from '../spec/sandboxes.js';
import type { ForkRequest, TemplateInfo } from '../spec/snapshots.js';
import { formatMs } from '../util/duration.js';
import type { MemoryFile, VmmProvider } from '../vmm/provider.js';
import { SandboxFiles } from './files.js';
import { type ForkAs, forkSandbox } from './forking.js';
import { ImageService } from './images.js';
import { checkTransition } from './lifecycle.js';
import { LiveSandbox } from './live.js';
import { readLog, SandboxLog } from './logs.js';
import { Machine } from './machine.js';
import {
  diskBytes,
  diskUses,
  prepareMounts,
  refuseSecondWriter,
  rootDirImage,
  rootDiskImage,
  sandboxMounts,
  writesDisks,
} from './mounts.js';
import { SandboxNetworking } from './networking.js';
import { pauseSandbox, resumeSandbox } from './pausing.js';
import { PolicyClock } from './policies.js';
import { SandboxProcesses } from './processes.js';
import { recoverSandboxes } from './recovery.js';
import { RestartPolicy } from './restarts.js';
import { SandboxSnapshots } from './snapshots.js';
import { describeStart, makeDisk, planNew, planRestore, restoreSpec, snapshotRef } from './starts.js';
import type { SandboxRecord, StateDb } from './state.js';
import { Templates } from './templates.js';
import { Turns } from './turns.js';
import { Volumes } from './volumes.js';

export interface ListFilter {
  labels?: Record<string, string>;
  states?: SandboxState[];
  /** Only those this API key made (E2B's API). */
  apiKey?: string;
}

export interface ManagerOptions {
  db: StateDb;
  /** The hypervisor: the runtime drives VMs only through this contract. */
  provider: VmmProvider;
  /** The server's images (default: a service over this database's home). */
  images?: ImageService;
}

/**
 * The runtime's core and the only way a sandbox is made: sandboxes kept in
 * the state database, their VMs, logs, metrics and lifecycle policies. The
 * server calls it; nothing else writes state.
 *
 * Crash safety: a row is written before anything on disk, marked `removing`
 * before its files go, and the VMM's pid is recorded the moment it exists, so
 * `recover()` can finish or undo whatever a killed server left half-done.
 */
export class SandboxManager {
  readonly db: StateDb;
  readonly provider: VmmProvider;
  /** Commands and terminals in running sandboxes. */
  readonly processes: SandboxProcesses;
  /** The guest file systems of running sandboxes. */
  readonly files: SandboxFiles;
  /** Network policies and published ports of running sandboxes. */
  readonly networking: SandboxNetworking;
  readonly images: ImageService;
  readonly snapshots: SandboxSnapshots;
  readonly templates: Templates;
  /** Named volumes: directories sandboxes mount, kept when they go. */
  readonly volumes: Volumes;
  private readonly live = new Map<string, LiveSandbox>();
  private readonly logs = new Map<string, SandboxLog>();
  private readonly policies = new PolicyClock(this);
  private readonly restarts = new RestartPolicy(this);
  private readonly turns = new Turns();

  constructor(opts: ManagerOptions) {
    this.db = opts.db;
    this.provider = opts.provider;
    this.images = opts.images ?? new ImageService(opts.db);
    this.processes = new SandboxProcesses(this);
    this.files = new SandboxFiles(this);
    this.networking = new SandboxNetworking(this);
    this.snapshots = new SandboxSnapshots(this);
    this.templates = new Templates(opts.db, opts.provider);
    this.volumes = new Volumes(opts.db, (name) =>
      this.db
        .list()
        .filter((r) => !r.removing && r.spec.mounts?.some((m) => m.type === 'volume' && m.source === name))
        .map((r) => r.name),
    );
    this.images.templatesPrune = (keep) => this.templates.prune(keep);
  }

  /** Adopts VMs that outlived the previous server, settles what it left half-done, starts the policy clock. */
  async recover(): Promise<void> {
    this.templates.recover();
    this.volumes.recover();
    await recoverSandboxes(this);
    this.snapshots.recover();
    this.policies.start();
  }

  /** Closes agent connections and timers; the VMs keep running for the next server. */
  close(): void {
    this.policies.stop();
    this.restarts.stop();
    this.templates.close().catch(() => {});
    this.snapshots.memories.close().catch(() => {});
    for (const l of this.live.values()) l.release();
    this.live.clear();
    for (const log of this.logs.values()) log.close();
    this.logs.clear();
  }

  /**
   * Makes a sandbox and starts its VM: restored from the snapshot the input
   * names, warm from its image's template when there is one, or booted.
   * `hostPaths`: the caller is on this machine (the unix socket), so patches may
   * name host files; a remote caller sends content. `pull` says how the image is
   * found: pulled per its policy, for a platform, from a plain-HTTP registry.
   */
  async create(
    input: unknown,
    opts: {
      signal?: AbortSignal;
      hostPaths?: boolean;
      pull?: CreateQuery;
      owner?: 'connection';
      fork?: { parent: string };
      /** The API key making it (the E2B API). */
      apiKey?: string;
    } = {},
  ): Promise<SandboxInfo> {
    const snapRef = snapshotRef(input);
    const snapshot = snapRef ? this.snapshots.find(snapRef) : undefined;
    const spec = snapshot ? restoreSpec(input as Record<string, unknown>, snapshot) : validateSpec(input);
    if (!opts.hostPaths) refuseHostPaths(spec);
    this.networking.check(spec);
    if (snapshot) await this.snapshots.check(snapshot);
    const image = snapshot
      ? snapshot.image
      : spec.rootDisk
        ? rootDiskImage(spec.rootDisk, opts.hostPaths ?? false)
        : spec.rootDir
          ? rootDirImage(spec.rootDir, opts.hostPaths ?? false)
          : await this.images.resolve(spec.image, opts.pull);
    if (spec.rootDir && (spec.upperSizeMib !== undefined || spec.diskMib !== undefined || spec.rootDisk))
      throw new SpecError('rootDir', 'a host directory as root has no disk: leave out diskMib, upperSizeMib and rootDisk');
    if (spec.upperSizeMib !== undefined && !snapshot) {
      if (spec.diskMib !== undefined) throw new SpecError('upperSizeMib', 'give diskMib or upperSizeMib, not both');
      // Room to write beyond the image: the root disk grows by it (the agent grows the filesystem at boot).
      spec.diskMib = Math.ceil(diskBytes(image) / MIB) + spec.upperSizeMib;
    }
    throwIfAborted(opts.signal);
    const plan = snapshot
      ? planRestore(snapshot, this.snapshots.dir(snapshot.id), opts.fork)
      : await planNew(image, spec, this.templates, opts.pull?.warm !== false);
    const id = randomBytes(8).toString('hex');
    const name = spec.name ?? `sbx-${id.slice(0, 8)}`;
    const mounted = prepareMounts(spec, { hostPaths: opts.hostPaths ?? false, volumes: this.volumes });
    refuseSecondWriter(mounted, this.volumes, (key) => this.diskWriters(key));
    const rec: SandboxRecord = {
      id,
      name,
      spec: { ...mounted, name },
      image,
      state: 'creating',
      reason: null,
      pid: null,
      createdAt: Date.now(),
      startedAt: null,
      stoppedAt: null,
      removing: false,
      owner: opts.owner ?? null,
      origin: plan.origin,
      apiKey: opts.apiKey ?? null,
    };
    this.db.insert(rec); // claims the name, before anything exists on disk
    const dir = this.dir(id);
    let madeVolumes: string[] = [];
    try {
      madeVolumes = this.volumes.ensure(rec.spec.mounts ?? []);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (!snapshot) {
        rec.spec = await this.networking.prepare(rec.spec, dir);
        this.db.update(id, { spec: rec.spec });
      }
      this.system(id, `created ${describeStart(rec, snapshot?.name)} (${spec.cpus} CPU, ${spec.memoryMib} MiB)`);
      if (!spec.rootDir) await makeDisk(plan, dir, spec.diskMib);
      throwIfAborted(opts.signal);
      await this.bootInto(rec, {
        signal: opts.signal,
        patches: plan.patches ? spec.patches : undefined,
        restoreFrom: plan.restoreFrom,
        memoryFile: plan.memoryFile,
        // A warm clone's guest is the template's: it mounts what this sandbox wants, as a booted one does.
        freshGuest: plan.origin.start === 'cold' || plan.origin.start === 'warm',
      });
    } catch (err) {
      this.forget(id);
      // Volumes this create made go with it; ones that were there stay.
      for (const name of madeVolumes) {
        try {
          this.volumes.remove(name);
        } catch {}
      }
      throw diskError(err);
    }
    // The next create of this image and shape can start warm.
    if (plan.origin.start === 'cold' && !snapshot) this.templates.soon(image, spec);
    return this.info(id);
  }

  /** Running copies of a running sandbox, which carries on as it was. */
  fork(ref: string, req: ForkRequest = {}, as: ForkAs = {}): Promise<SandboxInfo[]> {
    return forkSandbox(this, ref, req, as);
  }

  /** Makes the template warm creates of this image and shape restore (now, not in the background). */
  async warmTemplate(reference: string, shape: { cpus?: number; memoryMib?: number } = {}): Promise<TemplateInfo> {
    const spec = validateSpec({ image: reference, ...shape });
    const image = await this.images.resolve(spec.image);
    const t = await this.templates.build(image, spec);
    return { ...t.info, usedBy: this.templates.usedBy(t.key) };
  }

  /**
   * Boots the VM on the sandbox's overlay (or resumes the one saved in
   * `restoreFrom`) and records it running; `patches` go in at the first boot only.
   * For the runtime's modules (pausing).
   */
  async bootInto(
    rec: SandboxRecord,
    opts: { signal?: AbortSignal; patches?: Patch[]; restoreFrom?: string; memoryFile?: MemoryFile; freshGuest?: boolean },
  ): Promise<void> {
    refuseSecondWriter(rec.spec, this.volumes, (key) => this.diskWriters(key, rec.id));
    for (const m of rec.spec.mounts ?? []) if (m.type === 'volume') this.volumes.ready(m.source);
    const mounts = sandboxMounts(rec.spec, this.volumes);
    const machine = await Machine.boot(this.provider, {
      id: rec.id,
      dir: this.dir(rec.id),
      spec: rec.spec,
      patches: opts.patches,
      restoreFrom: opts.restoreFrom,
      memoryFile: opts.memoryFile,
      shares: mounts.shares,
      disks: mounts.disks,
      // A restored guest has its mounts (and its init) in its memory already.
      mounts: (opts.freshGuest ?? !opts.restoreFrom) ? mounts.guest : undefined,
      signal: opts.signal,
      onSpawn: (pid) => this.db.update(rec.id, { pid }),
    });
    let network: SandboxNetwork;
    try {
      network = await this.networking.attach(rec, machine);
    } catch (err) {
      await machine.stop({ timeoutMs: 1000 });
      throw err;
    }
    const startedAt = Date.now();
    this.db.update(rec.id, { state: 'running', reason: null, pid: machine.vm.pid, startedAt });
    this.adopt({ ...rec, startedAt }, machine, network);
    this.system(rec.id, `${opts.restoreFrom ? 'resumed' : 'started'} (VM pid ${machine.vm.pid})`);
  }

  /** Starts tracking a VM: metrics, activity, network, and its unexpected death. */
  adopt(rec: SandboxRecord, machine: Machine, network: SandboxNetwork): void {
    const live = new LiveSandbox(machine, network, rec.spec.metricsIntervalMs ?? 1000);
    this.live.set(rec.id, live);
    // A guest that breaks the protocol cannot be served on: its VM is ended and the sandbox failed, with the reason.
    let violation: string | undefined;
    machine.agent.onViolation((err) => {
      if (this.live.get(rec.id) !== live || violation) return;
      violation = err.message;
      this.db.update(rec.id, { state: 'stopping', reason: violation });
      this.system(rec.id, `${err.message}: ending the VM`);
      void machine.vm.stop({ timeoutMs: 1000 });
    });
    machine.vm.exited.then((exit) => {
      if (this.live.get(rec.id) !== live) return; // stopped on purpose
      this.live.delete(rec.id);
      live.release();
      const how = violation
        ? violation
        : exit.code === 0
          ? 'the guest powered off'
          : exit.signal
            ? `the VM was killed by ${exit.signal}`
            : exit.code !== null
              ? `the VM exited with code ${exit.code}`
              : 'the VM exited';
      const tail = machine.vm.consoleTail(5);
      if (tail) this.system(rec.id, `console:\n${tail}`);
      this.ended(rec.id, exit.code === 0 && !violation ? 'stopped' : 'failed', how);
    });
  }

  /** Records a sandbox as down with its reason; an ephemeral one, or one a run's connection owns, is removed. */
  ended(id: string, state: 'stopped' | 'failed', reason: string): void {
    const rec = this.db.get(id);
    if (!rec) return;
    this.db.update(id, { state, reason, pid: null, stoppedAt: Date.now() });
    this.system(id, `${state}: ${reason}`);
    if (rec.spec.ephemeral || rec.owner === 'connection') this.forget(id);
    else if (state === 'failed') this.restarts.failed(id);
  }

  async stop(ref: string, opts: { reason?: string; timeoutMs?: number } = {}): Promise<SandboxInfo> {
    return this.serially(this.find(ref).id, () => this.stopNow(ref, opts));
  }

  private async stopNow(ref: string, opts: { reason?: string; timeoutMs?: number }): Promise<SandboxInfo> {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'stop');
    const reason = opts.reason ?? 'stopped by request';
    // The reason is there while it stops, so a command cut off by the stop can say why.
    this.db.update(rec.id, { state: 'stopping', reason });
    await this.takeDown(rec.id, { graceful: true, timeoutMs: opts.timeoutMs ?? 10_000, reason });
    // A paused sandbox that stops forgets its memory; its disk stays, as any stopped one's.
    rmSync(this.pausedState(rec.id), { force: true });
    this.ended(rec.id, 'stopped', reason);
    const after = this.db.get(rec.id);
    // An ephemeral sandbox is gone by now: say how it ended all the same.
    return toInfo(after ?? { ...rec, state: 'stopped', reason, pid: null, stoppedAt: Date.now() }, this.dir(rec.id));
  }

  /** Saves a running sandbox's whole VM and ends its QEMU: no process and no memory held until `resume`. */
  async pause(ref: string, opts: { reason?: string } = {}): Promise<SandboxInfo> {
    return this.serially(this.find(ref).id, () => pauseSandbox(this, ref, opts.reason));
  }

  /** Brings a paused sandbox back where it was: its processes, memory and open files. */
  async resume(ref: string, opts: { signal?: AbortSignal } = {}): Promise<SandboxInfo> {
    return this.serially(this.find(ref).id, () => resumeSandbox(this, ref, opts));
  }

  /** Runs `fn` once the operations already asked of this sandbox's VM are done (see `Turns`). */
  serially<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.turns.run(id, fn);
  }

  /** Where a paused sandbox's memory and device state wait. */
  pausedState(id: string): string {
    return join(this.dir(id), 'paused.state');
  }

  /** Takes a running sandbox's live resources out of the runtime's hands (its VM's exit is on purpose from now). */
  detach(id: string): LiveSandbox | undefined {
    const live = this.live.get(id);
    this.live.delete(id);
    return live;
  }

  /** Stops a sandbox's VM and everything live about it, in one place. */
  private async takeDown(id: string, opts: { graceful?: boolean; timeoutMs: number; reason: string }): Promise<void> {
    await this.detach(id)?.shutdown(opts);
  }

  async start(ref: string, opts: { signal?: AbortSignal } = {}): Promise<SandboxInfo> {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'start');
    this.db.update(rec.id, { state: 'starting', reason: null });
    try {
      await this.bootInto({ ...rec, state: 'starting' }, { signal: opts.signal });
    } catch (err) {
      this.ended(rec.id, 'failed', `did not start: ${(err as Error).message}`);
      throw err;
    }
    return this.info(rec.id);
  }

  async restart(ref: string): Promise<SandboxInfo> {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'restart');
    if (rec.spec.ephemeral) {
      throw new VmboxError('invalidState', `sandbox ${rec.name} is ephemeral: it is removed when it stops, so it cannot restart`);
    }
    if (rec.state === 'running') await this.stop(rec.id, { reason: 'restarting' });
    return this.start(rec.id);
  }

  async remove(ref: string, opts: { force?: boolean; reason?: string } = {}): Promise<void> {
    const rec = this.find(ref);
    if (!opts.force || (rec.state !== 'running' && rec.state !== 'failed')) checkTransition(rec.name, rec.state, 'remove');
    if (rec.state === 'running') {
      const reason = opts.reason ?? 'removed by request';
      this.db.update(rec.id, { state: 'stopping', reason });
      // A sandbox writing a disk volume or image shuts down cleanly, so the disk is left consistent.
      await this.takeDown(rec.id, { timeoutMs: 2000, reason, graceful: writesDisks(rec.spec, this.volumes) });
    }
    this.forget(rec.id);
  }

  /** Deletes a sandbox's files and row, in the order a crash can be recovered from. */
  forget(id: string): void {
    const rec = this.db.get(id);
    if (!rec) return;
    this.db.update(id, { removing: true });
    this.logs.get(id)?.close();
    this.logs.delete(id);
    // A VM can run only while one is recorded, or before its pid was (a create or start cut short).
    if (rec.pid !== null || rec.state === 'creating' || rec.state === 'starting') {
      this.provider.adopt({ id, runDir: this.dir(id), pid: rec.pid })?.stop({ timeoutMs: 0 });
    }
    rmSync(this.dir(id), { recursive: true, force: true });
    this.db.delete(id);
    // A fork's copy goes with the last sandbox layered on it.
    if (rec.origin.snapshot) this.snapshots.dropIfUnused(rec.origin.snapshot);
  }

  /** Stops the sandbox `ms` from now (E2B's setTimeout): its maximum duration, counted from its start, moves. */
  setTimeout(ref: string, ms: number): SandboxInfo {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'exec');
    const ranFor = Date.now() - (rec.startedAt ?? Date.now());
    this.db.update(rec.id, { spec: { ...rec.spec, maxDurationMs: Math.max(1, ranFor + ms) } });
    this.touch(rec.id);
    this.system(rec.id, `timeout set: stops in ${formatMs(ms)}`);
    return this.info(rec.id);
  }

  /** Sandboxes with a VM (or about to have one) that use the disk file, and how (diskUses). */
  private diskWriters(file: string, except?: string): { name: string; use: 'write' | 'read' | 'root' }[] {
    const holding: SandboxRecord['state'][] = ['creating', 'starting', 'running', 'paused', 'stopping'];
    return this.db
      .list()
      .filter((r) => r.id !== except && !r.removing && holding.includes(r.state))
      .flatMap((r) =>
        diskUses(r.spec, this.volumes)
          .filter((u) => u.file === file)
          .map((u) => ({ name: r.name, use: u.use })),
      );
  }

  /** Whether the sandbox is removed when it stops (E2B's sandboxes are, but for one paused with its disk alone). */
  setEphemeral(ref: string, ephemeral: boolean): SandboxInfo {
    const rec = this.find(ref);
    if ((rec.spec.ephemeral ?? false) !== ephemeral) this.db.update(rec.id, { spec: { ...rec.spec, ephemeral } });
    return this.info(rec.id);
  }

  /** An API call on the sandbox: it is not idle. */
  touch(ref: string): void {
    const rec = this.db.find(ref);
    if (rec) this.live.get(rec.id)?.touch();
  }

  async metrics(ref: string): Promise<Metrics> {
    const { live } = this.running(ref, 'stats');
    const latest = await live.sampler.sample();
    return { latest, history: live.sampler.history() };
  }

  readLogs(ref: string, opts: { sinceMs?: number; sources?: LogSource[]; tail?: number } = {}): LogEntry[] {
    return readLog(this.dir(this.find(ref).id), opts);
  }

  /** Calls `fn` with each new entry until the returned function is called or the sandbox is removed. */
  followLogs(ref: string, fn: (e: LogEntry) => void, end?: () => void): () => void {
    return this.log(this.find(ref).id).subscribe(fn, end);
  }

  get(ref: string): SandboxInfo {
    return this.info(this.find(ref).id);
  }

  list(filter: ListFilter = {}): SandboxInfo[] {
    return this.db
      .list()
      .filter((r) => !r.removing && r.state !== 'creating')
      .filter((r) => !filter.states?.length || filter.states.includes(r.state))
      .filter((r) => filter.apiKey === undefined || r.apiKey === filter.apiKey)
      .filter((r) => Object.entries(filter.labels ?? {}).every(([k, v]) => r.spec.labels?.[k] === v))
      .map((r) => toInfo(r, this.dir(r.id)));
  }

  events(ref: string): SandboxEvent[] {
    return this.db.events(this.find(ref).id).map(({ at, kind, message }) => ({ at, kind, message }));
  }

  /** Sandboxes with a VM this server drives. */
  get runningCount(): number {
    return this.live.size;
  }

  /** The live sandboxes, for the policy clock. */
  liveSandboxes(): IterableIterator<[string, LiveSandbox]> {
    return this.live.entries();
  }

  /** A sandbox's live resources, when it has a VM here (no lifecycle check, no activity). */
  liveOf(id: string): LiveSandbox | undefined {
    return this.live.get(id);
  }

  /** A sandbox `op` needs running, with its live resources; the call counts as activity. */
  running(ref: string, op: 'exec' | 'stats' = 'exec'): { rec: SandboxRecord; live: LiveSandbox } {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, op);
    const live = this.live.get(rec.id);
    if (!live) throw new VmboxError('invalidState', `sandbox ${rec.name} has no VM attached: restart it`);
    live.touch();
    return { rec, live };
  }

  find(ref: string): SandboxRecord {
    const rec = this.db.find(ref);
    if (!rec || rec.removing) throw new VmboxError('sandboxNotFound', `no sandbox named or with id ${ref}: see vmbox ls`);
    return rec;
  }

  private info(id: string): SandboxInfo {
    const rec = this.db.get(id);
    if (!rec) throw new VmboxError('sandboxNotFound', `sandbox ${id} was removed`);
    return toInfo(rec, this.dir(id));
  }

  dir(id: string): string {
    return paths.sandbox(id);
  }

  log(id: string): SandboxLog {
    let log = this.logs.get(id);
    if (!log) {
      log = new SandboxLog(this.dir(id));
      this.logs.set(id, log);
    }
    return log;
  }

  /** A line from vmbox itself, in the sandbox's log and its events. */
  system(id: string, message: string): void {
    this.db.addEvent(id, 'system', message);
    try {
      this.log(id).append('system', message);
    } catch {}
  }
}

function toInfo(r: SandboxRecord, dir: string): SandboxInfo {
  return {
    id: r.id,
    name: r.name,
    image: r.image.name,
    state: r.state,
    reason: r.reason,
    cpus: r.spec.cpus,
    memoryMib: r.spec.memoryMib,
    labels: r.spec.labels ?? {},
    metadata: r.spec.labels ?? {},
    ephemeral: r.spec.ephemeral ?? false,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    stoppedAt: r.stoppedAt,
    pid: r.pid,
    dir,
    origin: r.origin,
    spec: (r.spec.secrets ? { ...r.spec, secrets: r.spec.secrets.map((s) => ({ ...s, value: HIDDEN_VALUE })) } : r.spec) as SandboxSpec,
  };
}

/** Host paths (patches that copy from the host) are for clients on the server's machine only. */
function refuseHostPaths(spec: SandboxSpec): void {
  const i = spec.patches?.findIndex((p) => p.op === 'copy') ?? -1;
  if (i < 0) return;
  throw new SpecError(
    `patches.${i}`,
    "op copy reads a host path, which only clients on the server's machine may name (its unix socket): over TCP, send the content in the request (op write with text or base64)",
  );
}

const MIB = 1024 * 1024;

/** The caller went away (Ctrl-C mid-create): stop before the next costly step. */
function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new VmboxError('aborted', 'the create was cancelled: the client went away');
}

/** A full disk says so, and where. */
function diskError(err: unknown): unknown {
  const msg = (err as Error)?.message ?? '';
  if ((err as NodeJS.ErrnoException)?.code === 'ENOSPC' || /No space left on device/i.test(msg)) {
    return new VmboxError('noSpace', `no space left under ${paths.sandboxes()}: free some disk space and create the sandbox again`, {
      cause: err,
    });
  }
  return err;
}
