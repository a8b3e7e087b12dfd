import { createInterface } from 'node:readline';
import type { ExecStart, RunStart } from '../spec/api.js';
import type { CreateQuery, PullPolicy } from '../spec/images.js';
import type { BoundPort, NetworkPolicyInput } from '../spec/network.js';
import type { SandboxSpec } from '../spec/sandbox.js';
import type { LogEntry, LogSource, Metrics, MetricsSample, SandboxDetails, SandboxInfo, SandboxState } from '../spec/sandboxes.js';
import type { SnapshotInfo } from '../spec/snapshots.js';
import { Commands } from './commands.js';
import { type CallOptions, Connection, type ConnectionOptions } from './connection.js';
import { Files } from './files.js';
import { Network, type PortOptions, Ports } from './network.js';
import { runPath, sandboxesPath, sandboxPath } from './paths.js';
import { ProcessSocket, type ProcessStreams } from './process-socket.js';
import { Pty } from './pty.js';
import { insecureFromEnv } from './registry-env.js';

export type { SandboxInfo, SandboxDetails, SandboxState, LogEntry, LogSource, Metrics, MetricsSample };

export interface SandboxOpts extends ConnectionOptions, Partial<Omit<SandboxSpec, 'env' | 'labels' | 'network' | 'ports'>> {
  /**
   * The sandbox's network (default: none). `{ allow: ['pypi.org'] }` opens just
   * that; `{ defaultAction: 'allow' }` opens the public internet. README "Networking".
   */
  network?: NetworkPolicyInput;
  /** Guest ports to publish on the host (default host address 127.0.0.1, any free port). */
  ports?: PortOptions[];
  /** Environment of every command (default none beyond the image's). */
  envs?: Record<string, string>;
  /** Labels, for filtering (`Sandbox.list`). */
  metadata?: Record<string, string>;
  labels?: Record<string, string>;
  /** Stop the sandbox this long after it starts (default: never); same as `maxDurationMs`. */
  timeoutMs?: number;
  /** When the server pulls the image: `if-missing` (default), `always`, `never`. */
  pull?: PullPolicy;
  /** `os/arch[/variant]` from a multi-platform image (default: the server's). */
  platform?: string;
  /** Plain HTTP to the image's registry (default: whether `VMBOX_INSECURE_REGISTRIES` lists it). */
  insecure?: boolean;
  /** Restore from the image's template when there is one (default true); false always boots. */
  warm?: boolean;
}

export interface SnapshotOpts {
  /** Default: the sandbox's name and a suffix. */
  name?: string;
  labels?: Record<string, string>;
  /** Replace a snapshot of that name (refused while something is layered on it). */
  force?: boolean;
  /** Record sha256 of each file; every restore checks them. */
  integrity?: boolean;
}

export interface ForkOpts {
  /** How many copies (default 1, or one per name). */
  count?: number;
  names?: string[];
  labels?: Record<string, string>;
  /** Make the copies from a memory file they share: the memory is held once, the file costs a few hundred ms first (default: from 4 copies). */
  shareMemory?: boolean;
}

/** How `Sandbox.runOnce` runs its command and streams it. */
export interface RunOnceOptions extends ProcessStreams {
  /** The command's settings, as the exec request names them (env, cwd, user, stdin, timeoutMs, pty). */
  exec?: Omit<ExecStart, 'argv' | 'background'>;
  signal?: AbortSignal;
}

export interface ListOpts extends ConnectionOptions {
  query?: { metadata?: Record<string, string>; state?: SandboxState[] };
}

export interface LogOpts {
  sources?: LogSource[];
  sinceMs?: number;
  tail?: number;
  /** Keep streaming new entries (default false). */
  follow?: boolean;
  signal?: AbortSignal;
}

const path = sandboxPath;

/** A sandbox on a vmbox server. Shaped like E2B's: `await Sandbox.create()`, `sbx.commands.run()`. */
export class Sandbox {
  /** Run commands: `run`, background handles, `list`, `connect`, `kill`. */
  readonly commands: Commands;
  /** Interactive terminals. */
  readonly pty: Pty;
  /** The guest's file system. */
  readonly files: Files;
  /** The network policy, changeable while it runs. */
  readonly network: Network;
  /** Published ports: host addresses carried to guest ports. */
  readonly ports: Ports;

  private constructor(
    private readonly conn: Connection,
    private info: SandboxInfo,
  ) {
    this.commands = new Commands(conn, info.id);
    this.pty = new Pty(conn, info.id, (pid) => this.commands.kill(pid));
    this.files = new Files(conn, info.id);
    this.network = new Network(conn, info.id);
    this.ports = new Ports(conn, info.id, (ports) => {
      this.info = { ...this.info, spec: { ...this.info.spec, ports: ports.map((p) => ({ ...p })) } };
    });
  }

  /**
   * The host address (`127.0.0.1:8080`) where a published guest port is reached;
   * throws when the port is not published (publish it with `ports.add`).
   */
  getHost(guestPort: number): string {
    const p = (this.info.spec.ports as BoundPort[] | undefined)?.find((x) => x.guestPort === guestPort);
    if (!p) throw new Error(`guest port ${guestPort} is not published: publish it with sbx.ports.add({ guestPort: ${guestPort} })`);
    return `${p.hostIp}:${p.hostPort}`;
  }

  get sandboxId(): string {
    return this.info.id;
  }
  get name(): string {
    return this.info.name;
  }

  /** Creates and boots a sandbox; resolves when its agent answers. */
  static async create(opts: SandboxOpts = {}, call: CallOptions = {}): Promise<Sandbox> {
    const { conn, body, image } = await Sandbox.prepare(opts);
    const q = new URLSearchParams(Object.entries(image).flatMap(([k, v]) => (v !== undefined ? [[k, String(v)] as [string, string]] : [])));
    const info = await conn.request<SandboxInfo>('POST', `${sandboxesPath}${q.size ? `?${q}` : ''}`, body, call);
    return new Sandbox(conn, info);
  }

  /**
   * Runs one command in a sandbox made for it (what `vmbox run` does): the
   * sandbox belongs to this call's connection and is removed when the command
   * ends or the connection does (the caller exits or is killed, Ctrl-C
   * mid-boot, a server restart). `onCreated` hears of the sandbox before the
   * command starts. The returned process streams as `commands.exec`'s does.
   */
  static async runOnce(argv: string[], opts: SandboxOpts & RunOnceOptions = {}): Promise<ProcessSocket> {
    const { exec = {}, onStdout, onStderr, onCreated, signal, ...sandbox } = opts;
    const { conn, body, image } = await Sandbox.prepare(sandbox);
    const start: RunStart = { sandbox: body as RunStart['sandbox'], pull: image, exec: { argv, ...exec } };
    const proc = new ProcessSocket(conn, runPath, start, { onStdout, onStderr, onCreated }, signal);
    const close = () => conn.close();
    proc.exit.then(close, close);
    return proc;
  }

  /** The connection, the spec as the API takes it, and how its image is found. */
  private static async prepare(opts: SandboxOpts): Promise<{ conn: Connection; body: Record<string, unknown>; image: CreateQuery }> {
    const { url, token, socketPath, autoStart, onServerStart, envs, metadata, timeoutMs, pull, platform, insecure, warm, ...spec } = opts;
    const conn = await Connection.open({ url, token, socketPath, autoStart, onServerStart });
    const body = {
      ...spec,
      ...(spec.ports ? { ports: spec.ports.map((p) => ({ hostPort: 0, ...p })) } : {}),
      ...(envs ? { env: envs } : {}),
      ...(metadata || spec.labels ? { labels: { ...metadata, ...spec.labels } } : {}),
      ...(timeoutMs !== undefined ? { maxDurationMs: timeoutMs } : {}),
    };
    const image: CreateQuery = {
      pull,
      platform,
      insecure: insecure ?? (spec.image ? insecureFromEnv(spec.image) : undefined),
      ...(warm === false ? { warm } : {}),
    };
    return { conn, body, image };
  }

  /** A handle on an existing sandbox, by id, id prefix or name. */
  static async connect(ref: string, opts: ConnectionOptions = {}): Promise<Sandbox> {
    const conn = await Connection.open(opts);
    let info = await conn.request<SandboxInfo>('GET', path(ref));
    // As E2B's connect does: a paused sandbox is resumed.
    if (info.state === 'paused') info = await conn.request<SandboxInfo>('POST', path(info.id, '/resume'), {});
    return new Sandbox(conn, info);
  }

  static async list(opts: ListOpts = {}): Promise<SandboxInfo[]> {
    const conn = await Connection.open(opts);
    try {
      const q = new URLSearchParams();
      const labels = Object.entries(opts.query?.metadata ?? {}).map(([k, v]) => `${k}=${v}`);
      if (labels.length) q.set('label', labels.join(','));
      if (opts.query?.state?.length) q.set('state', opts.query.state.join(','));
      return await conn.request<SandboxInfo[]>('GET', `${sandboxesPath}${q.size ? `?${q}` : ''}`);
    } finally {
      conn.close();
    }
  }

  async getInfo(): Promise<SandboxDetails> {
    const info = await this.conn.request<SandboxDetails>('GET', path(this.sandboxId));
    this.info = info;
    return info;
  }

  /** Stops the sandbox `timeoutMs` from now (replacing its maximum duration). */
  async setTimeout(timeoutMs: number, call: CallOptions = {}): Promise<void> {
    this.info = await this.conn.request('POST', path(this.sandboxId, '/timeout'), { timeoutMs }, call);
  }

  /** Whether the sandbox's VM is up. */
  async isRunning(call: CallOptions = {}): Promise<boolean> {
    return (await this.conn.request<SandboxInfo>('GET', path(this.sandboxId), undefined, call)).state === 'running';
  }

  async getMetrics(): Promise<Metrics> {
    return this.conn.request('GET', path(this.sandboxId, '/metrics'));
  }

  async stop(opts: { timeoutMs?: number } = {}): Promise<SandboxInfo> {
    return this.conn.request('POST', path(this.sandboxId, '/stop'), opts);
  }
  async start(): Promise<SandboxInfo> {
    return this.conn.request('POST', path(this.sandboxId, '/start'), {});
  }
  async restart(): Promise<SandboxInfo> {
    return this.conn.request('POST', path(this.sandboxId, '/restart'), {});
  }
  /** Saves memory, processes and devices to disk and ends the VM: nothing runs, no memory is held. */
  async pause(): Promise<SandboxInfo> {
    this.info = await this.conn.request('POST', path(this.sandboxId, '/pause'), {});
    return this.info;
  }
  /** Brings a paused sandbox back where it was (`Sandbox.connect` does it too). */
  async resume(): Promise<SandboxInfo> {
    this.info = await this.conn.request('POST', path(this.sandboxId, '/resume'), {});
    return this.info;
  }

  /**
   * Takes a snapshot: a running sandbox's memory, processes and disk at one
   * instant (it keeps running), a stopped one's disk. `Sandbox.create({ snapshot })`
   * restores it.
   */
  async snapshot(opts: SnapshotOpts = {}): Promise<SnapshotInfo & { timing: { pausedMs: number; totalMs: number } }> {
    return this.conn.request('POST', path(this.sandboxId, '/snapshots'), opts);
  }

  /** Running copies of this running sandbox, which carries on as it was (its commands, terminals, connections). */
  async fork(opts: ForkOpts = {}): Promise<Sandbox[]> {
    const infos = await this.conn.request<SandboxInfo[]>('POST', path(this.sandboxId, '/fork'), opts);
    return infos.map((info) => new Sandbox(this.conn.sibling(), info));
  }

  /** Removes the sandbox, stopping it first if it runs. */
  async kill(): Promise<void> {
    await this.conn.request('DELETE', `${path(this.sandboxId)}?force=true`);
  }

  /** The sandbox's log entries; with `follow`, new ones as they come until `signal` aborts. */
  async *logs(opts: LogOpts = {}): AsyncGenerator<LogEntry> {
    const q = new URLSearchParams();
    if (opts.sources?.length) q.set('source', opts.sources.join(','));
    if (opts.sinceMs !== undefined) q.set('sinceMs', String(opts.sinceMs));
    if (opts.tail !== undefined) q.set('tail', String(opts.tail));
    if (opts.follow) q.set('follow', 'true');
    let res: Awaited<ReturnType<Connection['stream']>>;
    try {
      res = await this.conn.stream(`${path(this.sandboxId, '/logs')}?${q}`, { signal: opts.signal });
    } catch (err) {
      if (opts.signal?.aborted) return;
      throw err;
    }
    try {
      for await (const line of createInterface({ input: res })) if (line) yield JSON.parse(line) as LogEntry;
    } catch (err) {
      if (!opts.signal?.aborted) throw this.conn.transportError(err as NodeJS.ErrnoException);
    }
  }

  /** Closes this handle's connections; the sandbox keeps running. */
  close(): void {
    this.conn.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.kill();
    } finally {
      this.close();
    }
  }
}
