import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import type { ExecStreams, GuestProcess } from '../guest/client.js';
import { resolveImage } from '../images/catalog.js';
import type { PullOptions } from '../images/pull.js';
import { paths } from '../paths.js';
import { type SandboxSpec, validateSpec } from '../spec/sandbox.js';
import { findQemuOf, isQemuOf } from '../vmm/qemu/provider.js';
import { checkTransition, type SandboxState } from './lifecycle.js';
import { type LogEntry, type LogSource, readLog, SandboxLog } from './logs.js';
import { type MetricsSample, MetricsSampler } from './metrics.js';
import { IMAGE_FILE, OWNER_FILE } from './orphans.js';
import { createOverlay } from './overlay.js';
import { type ExecOptions, OVERLAY, Sandbox } from './sandbox.js';
import type { SandboxRecord, StateDb } from './state.js';

/** What the API tells about a sandbox. */
export interface SandboxInfo {
  id: string;
  name: string;
  image: string;
  state: SandboxState;
  reason: string | null;
  cpus: number;
  memoryMib: number;
  labels: Record<string, string>;
  ephemeral: boolean;
  createdAt: number;
  startedAt: number | null;
  stoppedAt: number | null;
  /** QEMU's pid while the VM runs. */
  pid: number | null;
  dir: string;
  spec: SandboxSpec;
}

export interface ListFilter {
  labels?: Record<string, string>;
  states?: SandboxState[];
}

/** A sandbox with a VM: what the server holds besides the database row. */
interface Live {
  sandbox: Sandbox;
  sampler: MetricsSampler;
  lastActivity: number;
  activeExecs: number;
}

const POLICY_TICK_MS = 250;

/**
 * The runtime's core: sandboxes kept in the state database, their VMs, logs,
 * metrics and lifecycle policies. The server calls it; nothing else writes state.
 *
 * Crash safety: a row is written before anything on disk, marked `removing`
 * before its files go, and QEMU's pid is recorded the moment it exists, so
 * `recover()` can finish or undo whatever a killed server left half-done.
 */
export class SandboxManager {
  private readonly live = new Map<string, Live>();
  private readonly logs = new Map<string, SandboxLog>();
  private policyTimer?: NodeJS.Timeout;

  constructor(
    private readonly db: StateDb,
    private readonly pull: PullOptions = {},
  ) {}

  /** Reattaches to VMs that outlived the previous server, settles what it left half-done, starts the policy clock. */
  async recover(): Promise<void> {
    await Promise.all(this.db.list().map((rec) => this.recoverOne(rec)));
    this.sweepStrayDirs();
    this.policyTimer = setInterval(() => this.enforcePolicies(), POLICY_TICK_MS);
    this.policyTimer.unref();
  }

  private async recoverOne(rec: SandboxRecord): Promise<void> {
    const alive = rec.pid !== null && isQemuOf(rec.pid, rec.id);
    if (rec.removing || rec.state === 'creating') {
      // Half-made or half-removed: finish removing it. Its QEMU may have been
      // spawned before its pid was recorded: look for it by name.
      const pid = alive ? rec.pid : findQemuOf(rec.id);
      if (pid) killQuietly(pid);
      this.forget(rec.id);
      return;
    }
    if (rec.state === 'starting' && !alive) {
      const pid = findQemuOf(rec.id);
      if (pid) killQuietly(pid);
    }
    if ((rec.state === 'running' || rec.state === 'stopping' || rec.state === 'starting') && alive) {
      try {
        const sandbox = await Sandbox.attach({
          id: rec.id,
          dir: this.dir(rec.id),
          spec: rec.spec,
          image: rec.image,
          pid: rec.pid as number,
        });
        this.db.update(rec.id, { state: 'running' });
        this.adopt(rec, sandbox);
        this.system(rec.id, `reattached to the running VM (pid ${rec.pid}) after a server restart`);
        if (rec.state === 'stopping') await this.stop(rec.id, { reason: 'stopped by request' });
        return;
      } catch (err) {
        killQuietly(rec.pid as number);
        this.ended(rec.id, 'failed', `the VM did not answer after a server restart: ${(err as Error).message}`);
        return;
      }
    }
    if (rec.state === 'running' || rec.state === 'stopping' || rec.state === 'starting') {
      this.ended(rec.id, 'stopped', 'the VM exited while the server was down');
      return;
    }
    if (rec.spec.ephemeral) this.forget(rec.id);
  }

  /** Removes sandbox directories no row knows of (a crash before the row existed), sparing throw-away ones. */
  private sweepStrayDirs(): void {
    let ids: string[] = [];
    try {
      ids = readdirSync(paths.sandboxes());
    } catch {}
    for (const id of ids) {
      const dir = this.dir(id);
      try {
        statSync(join(dir, OWNER_FILE));
        continue; // a `Sandbox.create` of some process: reaped by its own rules
      } catch {}
      if (this.db.get(id)) continue;
      try {
        if (Date.now() - statSync(dir).mtimeMs < 60_000) continue;
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Closes agent connections and timers; the VMs keep running for the next server. */
  close(): void {
    clearInterval(this.policyTimer);
    for (const l of this.live.values()) {
      l.sampler.stop();
      l.sandbox.agent.close();
    }
    this.live.clear();
    for (const log of this.logs.values()) log.close();
    this.logs.clear();
  }

  async create(input: unknown, opts: { signal?: AbortSignal } = {}): Promise<SandboxInfo> {
    const spec = validateSpec(input);
    const image = await resolveImage(spec.image, this.pull);
    const id = randomBytes(8).toString('hex');
    const name = spec.name ?? `sbx-${id.slice(0, 8)}`;
    const now = Date.now();
    const rec: SandboxRecord = {
      id,
      name,
      spec: { ...spec, name },
      image,
      state: 'creating',
      reason: null,
      pid: null,
      createdAt: now,
      startedAt: null,
      stoppedAt: null,
      removing: false,
    };
    this.db.insert(rec); // claims the name, before anything exists on disk
    const dir = this.dir(id);
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, IMAGE_FILE), image.name);
      this.system(id, `created from image ${image.name} (${spec.cpus} CPU, ${spec.memoryMib} MiB)`);
      await createOverlay(image.rootfsPath, join(dir, OVERLAY));
      await this.bootInto(rec, opts.signal);
    } catch (err) {
      this.forget(id);
      throw diskError(err);
    }
    return this.info(id);
  }

  /** Boots the VM on the sandbox's overlay and records it running. */
  private async bootInto(rec: SandboxRecord, signal?: AbortSignal): Promise<void> {
    const sandbox = await Sandbox.boot({
      id: rec.id,
      dir: this.dir(rec.id),
      spec: rec.spec,
      image: rec.image,
      signal,
      onSpawn: (pid) => this.db.update(rec.id, { pid }),
    });
    const startedAt = Date.now();
    this.db.update(rec.id, { state: 'running', reason: null, pid: sandbox.vm.pid, startedAt });
    this.adopt({ ...rec, startedAt }, sandbox);
    this.system(rec.id, `started (QEMU pid ${sandbox.vm.pid})`);
  }

  /** Starts tracking a VM: metrics, activity, and its unexpected death. */
  private adopt(rec: SandboxRecord, sandbox: Sandbox): void {
    const sampler = new MetricsSampler(sandbox, rec.spec.metricsIntervalMs ?? 1000);
    const live: Live = { sandbox, sampler, lastActivity: Date.now(), activeExecs: 0 };
    this.live.set(rec.id, live);
    sampler.start();
    sandbox.vm.exited.then((exit) => {
      if (this.live.get(rec.id) !== live) return; // stopped on purpose
      this.live.delete(rec.id);
      sampler.stop();
      sandbox.agent.close();
      const how =
        exit.code === 0
          ? 'the guest powered off'
          : exit.signal
            ? `QEMU was killed by ${exit.signal}`
            : exit.code !== null
              ? `QEMU exited with code ${exit.code}`
              : 'QEMU exited';
      const tail = sandbox.vm.consoleTail(5);
      if (tail) this.system(rec.id, `console:\n${tail}`);
      this.ended(rec.id, exit.code === 0 ? 'stopped' : 'failed', how);
    });
  }

  /** Records a sandbox as down with its reason; an ephemeral one is removed. */
  private ended(id: string, state: 'stopped' | 'failed', reason: string): void {
    const rec = this.db.get(id);
    if (!rec) return;
    this.db.update(id, { state, reason, pid: null, stoppedAt: Date.now() });
    this.system(id, `${state}: ${reason}`);
    if (rec.spec.ephemeral) this.forget(id);
  }

  async stop(ref: string, opts: { reason?: string; timeoutMs?: number } = {}): Promise<SandboxInfo> {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'stop');
    const live = this.live.get(rec.id);
    // The reason is there while it stops, so a command cut off by the stop can say why.
    this.db.update(rec.id, { state: 'stopping', reason: opts.reason ?? 'stopped by request' });
    this.live.delete(rec.id);
    if (live) {
      live.sampler.stop();
      await live.sandbox.stop({ graceful: true, timeoutMs: opts.timeoutMs ?? 10_000 });
    }
    const info = this.info(rec.id);
    this.ended(rec.id, 'stopped', opts.reason ?? 'stopped by request');
    return { ...info, state: 'stopped', reason: opts.reason ?? 'stopped by request' };
  }

  async start(ref: string, opts: { signal?: AbortSignal } = {}): Promise<SandboxInfo> {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'start');
    this.db.update(rec.id, { state: 'starting', reason: null });
    try {
      await this.bootInto({ ...rec, state: 'starting' }, opts.signal);
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

  async remove(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    const rec = this.find(ref);
    if (!opts.force || (rec.state !== 'running' && rec.state !== 'failed')) checkTransition(rec.name, rec.state, 'remove');
    if (rec.state === 'running') {
      const live = this.live.get(rec.id);
      this.live.delete(rec.id);
      this.db.update(rec.id, { state: 'stopping', reason: 'removed' });
      live?.sampler.stop();
      await live?.sandbox.stop({ timeoutMs: 2000 });
    }
    this.forget(rec.id);
  }

  /** Deletes a sandbox's files and row, in the order a crash can be recovered from. */
  private forget(id: string): void {
    const rec = this.db.get(id);
    if (!rec) return;
    this.db.update(id, { removing: true });
    this.logs.get(id)?.close();
    this.logs.delete(id);
    if (rec.pid !== null && isQemuOf(rec.pid, id)) killQuietly(rec.pid);
    rmSync(this.dir(id), { recursive: true, force: true });
    this.db.delete(id);
  }

  /** Runs a command in a running sandbox; its output goes to the sandbox's log too. */
  exec(ref: string, argv: string[], opts: ExecOptions = {}): GuestProcess {
    return this.tracked(ref, opts.pty !== undefined, opts, (live, streams) => live.sandbox.exec(argv, { ...opts, ...streams }));
  }

  /** Takes over a process started earlier (a background command, a terminal) by its pid. */
  attach(ref: string, pid: number, opts: ExecStreams & { pty?: boolean } = {}): GuestProcess {
    return this.tracked(ref, opts.pty ?? false, opts, (live, streams) => live.sandbox.agent.attach(pid, streams));
  }

  /** A process streamed to a client: counted as activity, its output logged (a terminal's as `output`). */
  private tracked(ref: string, pty: boolean, opts: ExecStreams, start: (live: Live, streams: ExecStreams) => GuestProcess): GuestProcess {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'exec');
    const live = this.liveOf(rec);
    const log = this.log(rec.id);
    live.activeExecs++;
    live.lastActivity = Date.now();
    const proc = start(live, {
      onStdout: (d) => {
        log.append(pty ? 'output' : 'stdout', d);
        return opts.onStdout?.(d);
      },
      onStderr: (d) => {
        log.append('stderr', d);
        return opts.onStderr?.(d);
      },
    });
    const done = () => {
      live.activeExecs--;
      live.lastActivity = Date.now();
    };
    proc.exit.then(done, done);
    return proc;
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

  /** An API call on the sandbox: it is not idle. */
  touch(ref: string): void {
    const rec = this.db.find(ref);
    const live = rec && this.live.get(rec.id);
    if (live) live.lastActivity = Date.now();
  }

  async metrics(ref: string): Promise<{ latest: MetricsSample; history: MetricsSample[] }> {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'stats');
    const live = this.liveOf(rec);
    const latest = await live.sampler.sample();
    return { latest, history: live.sampler.history() };
  }

  readLogs(ref: string, opts: { sinceMs?: number; sources?: LogSource[]; tail?: number } = {}): LogEntry[] {
    const rec = this.find(ref);
    return readLog(this.dir(rec.id), opts);
  }

  /** Calls `fn` with each new entry until the returned function is called or the sandbox is removed. */
  followLogs(ref: string, fn: (e: LogEntry) => void, end?: () => void): () => void {
    return this.log(this.find(ref).id).subscribe(fn, end);
  }

  get(ref: string): SandboxInfo {
    return this.info(this.find(ref).id);
  }

  /** The sandbox's VM-level handle, for routes that talk to its agent. */
  sandbox(ref: string): Sandbox {
    const rec = this.find(ref);
    checkTransition(rec.name, rec.state, 'exec');
    const live = this.liveOf(rec);
    live.lastActivity = Date.now();
    return live.sandbox;
  }

  list(filter: ListFilter = {}): SandboxInfo[] {
    return this.db
      .list()
      .filter((r) => !r.removing && r.state !== 'creating')
      .filter((r) => !filter.states?.length || filter.states.includes(r.state))
      .filter((r) => Object.entries(filter.labels ?? {}).every(([k, v]) => r.spec.labels?.[k] === v))
      .map((r) => toInfo(r, this.dir(r.id)));
  }

  events(ref: string) {
    return this.db.events(this.find(ref).id);
  }

  /** Sandboxes with a VM this server drives. */
  get runningCount(): number {
    return this.live.size;
  }

  private enforcePolicies(): void {
    const now = Date.now();
    for (const [id, live] of this.live) {
      const rec = this.db.get(id);
      if (!rec || rec.state !== 'running') continue;
      const { maxDurationMs, idleTimeoutMs } = rec.spec;
      let reason: string | undefined;
      if (maxDurationMs && rec.startedAt && now - rec.startedAt >= maxDurationMs) {
        reason = `policy: reached its maximum duration of ${formatMs(maxDurationMs)}`;
      } else if (idleTimeoutMs && live.activeExecs === 0 && now - live.lastActivity >= idleTimeoutMs) {
        reason = `policy: idle for ${formatMs(idleTimeoutMs)}`;
      }
      if (reason) {
        this.system(id, reason);
        this.stop(id, { reason }).catch((err) => this.system(id, `policy stop failed: ${(err as Error).message}`));
      }
    }
  }

  private find(ref: string): SandboxRecord {
    const rec = this.db.find(ref);
    if (!rec || rec.removing) throw new VmboxError('sandboxNotFound', `no sandbox named or with id ${ref}: see vmbox ls`);
    return rec;
  }

  private liveOf(rec: SandboxRecord): Live {
    const live = this.live.get(rec.id);
    if (!live) throw new VmboxError('invalidState', `sandbox ${rec.name} has no VM attached: restart it`);
    return live;
  }

  private info(id: string): SandboxInfo {
    const rec = this.db.get(id);
    if (!rec) throw new VmboxError('sandboxNotFound', `sandbox ${id} was removed`);
    return toInfo(rec, this.dir(id));
  }

  private dir(id: string): string {
    return paths.sandbox(id);
  }

  private log(id: string): SandboxLog {
    let log = this.logs.get(id);
    if (!log) {
      log = new SandboxLog(this.dir(id));
      this.logs.set(id, log);
    }
    return log;
  }

  /** A line from vmbox itself, in the sandbox's log and its events. */
  private system(id: string, message: string): void {
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
    ephemeral: r.spec.ephemeral ?? false,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    stoppedAt: r.stoppedAt,
    pid: r.pid,
    dir,
    spec: r.spec,
  };
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
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

export function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
