import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { VmboxError } from '../errors.js';
import type { FileStat, WatchEvent } from '../spec/files.js';
import type { ExecExit, ProcessInfo } from '../spec/processes.js';
import { deferred } from '../util/deferred.js';
import { Channel, type ChannelHost } from './channel.js';
import { GuestConnection } from './connection.js';
import { AGENT_CHANNEL_BIT, encodeFrame, encodeJson, type Frame, FrameDecoder, Kind, MAX_PAYLOAD, PROTOCOL_GENERATION } from './frame.js';
import { checkEntryName, checkWatchedPath, expectPayload, type PayloadKind, ProtocolViolation } from './untrusted.js';

export interface ExecRequest {
  argv: string[];
  /** KEY=VALUE strings; the whole environment of the process. */
  env?: string[];
  /** NAME=SOFT:HARD strings (setrlimit's names, lower case, -1 unlimited), set before the user is switched. */
  rlimits?: string[];
  /** The restricted profile: no_new_privs (set-user-id programs gain nothing). */
  restricted?: boolean;
  /** The capabilities the command may hold at all, a bit per number (`capabilityMask`); absent: Docker's default set. */
  caps?: number;
  cwd?: string;
  /** A name, a uid, or uid:gid / name:group. */
  user?: string;
  /** Give the process a stdin pipe (otherwise /dev/null). */
  stdin?: boolean;
  /** Kill the process group after this long; 0 = never. */
  timeoutMs?: number;
  /** Run on a terminal of this size: stdin, stdout and stderr are the terminal, output comes as stdout. */
  pty?: { cols: number; rows: number };
  /** Outlive the channel: when it closes the agent keeps the process and its output for `attach`. */
  detached?: boolean;
}

export interface GuestWatch {
  /** Resolves once the agent watches (events from then on are seen). */
  readonly ready: Promise<void>;
  /** Settles when the watch ends: stopped, the directory removed, or the VM gone. */
  readonly done: Promise<unknown>;
  stop(): void;
}

export interface ExecStreams {
  /** Return a promise to hold back the guest until the bytes are handled. */
  onStdout?: (chunk: Buffer) => void | Promise<void>;
  onStderr?: (chunk: Buffer) => void | Promise<void>;
}

/** A process running in the guest. */
export interface GuestProcess {
  /** The protocol channel carrying this process (for diagnostics). */
  readonly channel: number;
  readonly pid: Promise<number>;
  readonly exit: Promise<ExecExit>;
  write(data: Uint8Array | string): Promise<void>;
  closeStdin(): void;
  kill(signal?: number): void;
  /** A PTY's new window size. */
  resize(cols: number, rows: number): void;
  /** Stop listening; the agent kills the process tree. */
  abort(reason?: Error): void;
}

/** What a file operation creates (files, directories, links) belongs to this guest user (a name, uid, or uid:gid); root when absent. */
export interface OwnedBy {
  owner?: string;
}

/** A mount the agent makes: a 9p share by its tag, a disk by its serial (`data`: its filesystem, else probed), or a tmpfs. */
export interface GuestMount {
  fstype: '9p' | 'tmpfs' | 'block';
  source: string;
  target: string;
  /** ro, noexec, nosuid, nodev */
  flags: string[];
  /** The filesystem's own options (9p's transport and size, tmpfs's size). */
  data?: string;
}

export interface DirEntry extends FileStat {
  name: string;
}

export interface GuestStats {
  memTotalBytes: number;
  memUsedBytes: number;
  diskTotalBytes: number;
  diskUsedBytes: number;
  processes: number;
}

/** Where a guest program's TCP connection was going, as conntrack saw it. */
export interface GuestDestination {
  address: string;
  port: number;
}

/** What the network side of the host does with the guest's traffic (src/network/). */
export interface GuestNetworkHandler {
  /** A connection the guest opened; the handler owns it (destroy() refuses it). */
  connection(conn: GuestConnection, to: GuestDestination): void;
  /** A DNS query; the answer goes back to the guest, none drops it. */
  dns(query: Buffer): Promise<Buffer | undefined>;
}

export interface HelloInfo {
  generation: number;
  agentVersion: string;
}

/** Past a command's timeout, how long the host waits for the guest's own kill before cutting it off. */
const DEFAULT_TIMEOUT_GRACE_MS = 10_000;
/** How long a request (ping, stat, list, mkdir …) may go unanswered before the host gives up on it. */
const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/** Host side of the agent protocol: many channels over one virtio-serial byte stream. */
export class AgentClient implements ChannelHost {
  private readonly decoder = new FrameDecoder();
  private readonly channels = new Map<number, Channel>();
  private nextId = 1;
  /** Channel ids have gone round once: any id may be a late one. */
  private wrapped = false;
  private closedWith?: Error;
  private hello = deferred<HelloInfo>();
  agent?: HelloInfo;
  /** Set while the sandbox has a network; without it guest connections are reset. */
  network?: GuestNetworkHandler;
  private violation?: ProtocolViolation;
  private violationListener?: (err: ProtocolViolation) => void;

  private constructor(
    private readonly stream: Duplex,
    private readonly closedError: () => Error,
    /** How long past a command's timeout the host waits for the guest to end it. */
    private readonly timeoutGraceMs = DEFAULT_TIMEOUT_GRACE_MS,
    private readonly requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
  ) {
    this.hello.promise.catch(() => {});
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', () => {});
    stream.on('close', () => this.onClose());
  }

  /**
   * Performs the handshake: our generation, the wall clock, fresh entropy and the
   * guest's hostname out, the agent's identity back. Every session gets them, so a
   * VM restored from a template or a fork stops sharing its siblings' random state
   * and name before anything of the user's runs.
   */
  static async connect(
    stream: Duplex,
    opts: {
      timeoutMs: number;
      closedError?: () => Error;
      signal?: AbortSignal;
      hostname?: string;
      timeoutGraceMs?: number;
      requestTimeoutMs?: number;
    },
  ): Promise<AgentClient> {
    const client = new AgentClient(
      stream,
      opts.closedError ?? (() => new VmboxError('vmDied', 'the agent connection closed')),
      opts.timeoutGraceMs,
      opts.requestTimeoutMs,
    );
    client.send(
      encodeJson(Kind.hello, 0, {
        generation: PROTOCOL_GENERATION,
        timeMs: Date.now(),
        entropy: randomBytes(64).toString('hex'),
        ...(opts.hostname ? { hostname: opts.hostname } : {}),
      }),
    );
    const timer = setTimeout(
      () => client.hello.reject(new VmboxError('bootFailed', `the guest agent did not answer within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    const onAbort = () => client.hello.reject(new VmboxError('aborted', 'aborted while waiting for the guest agent'));
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const info = await client.hello.promise;
      if (info.generation !== PROTOCOL_GENERATION) {
        throw new VmboxError(
          'agentProtocol',
          `the guest agent speaks protocol generation ${info.generation}, this host ${PROTOCOL_GENERATION}: rebuild the agent (rm -rf $VMBOX_HOME/cache/agent)`,
        );
      }
      client.agent = info;
      return client;
    } catch (err) {
      stream.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Frames sent in one tick leave in one write (a relayed response and its end,
   * say): each write the guest sees costs it an interrupt and the agent a wake-up.
   */
  send(frame: Buffer): void {
    if (this.closedWith) return;
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      process.nextTick(() => {
        this.corked = false;
        this.stream.uncork();
      });
    }
    this.stream.write(frame);
  }
  private corked = false;

  release(id: number): void {
    this.channels.delete(id);
  }

  close(): void {
    this.stream.destroy();
  }

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  /**
   * Called once if the agent breaks the protocol (now, if it already has). The
   * connection is closed by then: the guest cannot be trusted to go on, so the
   * sandbox should be failed, not served.
   */
  onViolation(listener: (err: ProtocolViolation) => void): void {
    this.violationListener = listener;
    if (this.violation) listener(this.violation);
  }

  /** Ends the connection for a protocol violation: every call in flight fails with it, at once. */
  private violate(err: ProtocolViolation): void {
    if (this.closedWith) return;
    this.violation = err;
    this.closedWith = err;
    this.hello.reject(err);
    for (const ch of [...this.channels.values()]) ch.fail(err);
    this.stream.destroy();
    this.violationListener?.(err);
  }

  private open(request: Record<string, unknown>): Channel {
    if (this.closedWith) throw this.closedWith;
    const id = this.nextId;
    if (this.nextId >= AGENT_CHANNEL_BIT - 1) this.wrapped = true;
    this.nextId = this.nextId >= AGENT_CHANNEL_BIT - 1 ? 1 : this.nextId + 1;
    const ch = new Channel(id, this);
    this.channels.set(id, ch);
    this.send(encodeJson(Kind.open, id, request));
    return ch;
  }

  private onData(chunk: Buffer): void {
    if (this.closedWith) return;
    for (const f of this.decoder.push(chunk)) {
      try {
        this.onFrame(f);
      } catch (err) {
        if (!(err instanceof ProtocolViolation)) throw err;
        this.violate(err);
      }
      if (this.closedWith) return;
    }
  }

  private onFrame(f: ReturnType<FrameDecoder['push']>[number]): void {
    if ('oversized' in f) throw new ProtocolViolation(`a frame of ${f.length} bytes, over the ${MAX_PAYLOAD}-byte maximum`);
    if (f.kind === Kind.dns) this.onDns(f);
    else if (f.kind === Kind.connect) this.onConnect(f);
    else if (f.channel === 0) this.onControl(f);
    else this.dispatch(f);
  }

  private onControl(f: Frame): void {
    if (f.kind !== Kind.hello || this.agent) throw new ProtocolViolation(`a frame of kind ${f.kind} on the control channel`);
    let info: HelloInfo;
    try {
      info = JSON.parse(f.payload.toString('utf8')) as HelloInfo;
    } catch {
      throw new ProtocolViolation('a malformed hello');
    }
    if (typeof info !== 'object' || info === null || !Number.isInteger(info.generation) || typeof info.agentVersion !== 'string') {
      throw new ProtocolViolation('a hello without a generation and an agent version');
    }
    this.hello.resolve(info);
  }

  private onConnect(f: Frame): void {
    if (f.channel < AGENT_CHANNEL_BIT || this.channels.has(f.channel)) {
      throw new ProtocolViolation(`a connection on channel ${f.channel}, which the agent may not open`);
    }
    let p: Partial<GuestDestination> | null;
    try {
      p = JSON.parse(f.payload.toString('utf8'));
    } catch {
      throw new ProtocolViolation('a connection with a malformed destination');
    }
    if (typeof p?.address !== 'string' || !Number.isInteger(p.port))
      throw new ProtocolViolation('a connection without an address and a port');
    const to = { address: p.address, port: p.port as number };
    const ch = new Channel(f.channel, this);
    this.channels.set(f.channel, ch);
    const conn = new GuestConnection(ch);
    if (!this.network) conn.destroy();
    else this.network.connection(conn, to);
  }

  private onDns(f: Frame): void {
    const network = this.network;
    if (!network) return;
    network.dns(f.payload).then(
      (answer) => {
        if (answer) this.send(encodeFrame(Kind.dns, f.channel, answer));
      },
      () => {},
    );
  }

  private dispatch(f: Frame): void {
    const ch = this.channels.get(f.channel);
    if (!ch) {
      // Late frames of a channel either side already closed are expected; one never opened is not.
      const opened = f.channel >= AGENT_CHANNEL_BIT || f.channel < this.nextId || this.wrapped;
      if (!opened) throw new ProtocolViolation(`a frame for channel ${f.channel}, which was never opened`);
      return;
    }
    try {
      ch.handle(f);
    } catch (err) {
      if (err instanceof ProtocolViolation) throw err;
      ch.abort(err as Error);
    }
  }

  private onClose(): void {
    if (this.closedWith) return;
    this.closedWith = this.closedError();
    this.hello.reject(this.closedWith);
    for (const ch of [...this.channels.values()]) ch.fail(this.closedWith);
  }

  exec(req: ExecRequest, streams: ExecStreams = {}): GuestProcess {
    const { pty, ...rest } = req;
    const ch = this.open({ op: 'exec', ...rest, stdin: req.stdin ?? false, ...(pty ? { pty: true, ...pty } : {}) });
    const proc = processOn(ch, streams);
    if (req.timeoutMs) this.hostDeadline(ch, proc, req.timeoutMs);
    return proc;
  }

  /**
   * The agent ends a command at its timeout; the host holds it to that too, so a
   * guest that does not (a wedged or hostile agent) cannot keep a caller waiting:
   * a grace period after the timeout the channel is cut and the command fails.
   */
  private hostDeadline(ch: Channel, proc: GuestProcess, timeoutMs: number): void {
    const timer = setTimeout(
      () =>
        ch.abort(
          new VmboxError(
            'commandTimeout',
            `the command ran past its ${timeoutMs} ms timeout and the guest did not end it within ${this.timeoutGraceMs} ms more: the host cut it off`,
          ),
        ),
      timeoutMs + this.timeoutGraceMs,
    );
    proc.exit.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
  }

  /** Takes over a process by pid: first what it wrote while nobody listened, then live output and its exit. */
  attach(pid: number, streams: ExecStreams = {}): GuestProcess {
    return processOn(this.open({ op: 'attach', pid }), streams);
  }

  async processes(): Promise<ProcessInfo[]> {
    return (await this.request<{ processes: ProcessInfo[] }>('ps', {}, 'processes')).processes;
  }

  /** Signals a process group by its leader's pid; an exited one is forgotten. */
  killProcess(pid: number, signal = 9): Promise<{ exited: boolean }> {
    return this.request('kill', { pid, signal });
  }

  watch(path: string, opts: { recursive?: boolean }, onEvents: (events: WatchEvent[]) => void): GuestWatch {
    const ch = this.open({ op: 'watch', path, recursive: opts.recursive ?? false });
    const ready = deferred<void>();
    ch.done.then(
      () => ready.resolve(),
      (err) => ready.reject(err),
    );
    ready.promise.catch(() => {});
    ch.onReply = (p) => {
      const { events } = expectPayload<{ events: WatchEvent[] }>('events', p);
      for (const e of events) checkWatchedPath(path, e);
      ready.resolve();
      if (events.length) onEvents(events);
    };
    return {
      ready: ready.promise,
      done: ch.done,
      stop: () => ch.abort(new VmboxError('aborted', 'the watch was stopped')),
    };
  }

  /** Streams a guest file; credit goes back as the consumer pulls, so memory stays bounded. */
  async *readFile(path: string): AsyncGenerator<Buffer, void, undefined> {
    const ch = this.open({ op: 'read', path });
    const queue: Buffer[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    ch.onData = (_kind, data) => {
      queue.push(data);
      wake?.();
      // Resolves when the consumer has taken this chunk.
      return new Promise<void>((r) => taken.push(r));
    };
    const taken: Array<() => void> = [];
    ch.done.then(
      () => {
        finished = true;
        wake?.();
      },
      (err) => {
        failure = err;
        finished = true;
        wake?.();
      },
    );
    try {
      for (;;) {
        const next = queue.shift();
        if (next) {
          taken.shift()?.();
          yield next;
          continue;
        }
        if (failure) throw failure;
        if (finished) return;
        // A guest that goes quiet mid-file would hold the reader for ever: it has the request timeout to send more.
        const stalled = setTimeout(() => ch.abort(this.stalled('reading', path)), this.requestTimeoutMs);
        await new Promise<void>((r) => {
          wake = r;
        });
        clearTimeout(stalled);
        wake = undefined;
      }
    } finally {
      if (!ch.isClosed) ch.abort(new VmboxError('aborted', 'the reader stopped'));
    }
  }

  async writeFile(
    path: string,
    data: Uint8Array | string | AsyncIterable<Uint8Array>,
    opts: { mode?: number; append?: boolean; mkdirs?: boolean; inPlace?: boolean; metadata?: Record<string, string> } & OwnedBy = {},
  ): Promise<{ size: number }> {
    const { metadata, ...rest } = opts;
    // KEY=VALUE strings: the agent's JSON is flat. Given, they replace the file's metadata whole.
    const meta = metadata && Object.entries(metadata).map(([k, v]) => `${k}=${v}`);
    const ch = this.open({ op: 'write', path, ...rest, ...(meta ? { metadata: meta } : {}) });
    try {
      if (typeof data === 'string' || data instanceof Uint8Array) {
        await ch.write(Kind.data, typeof data === 'string' ? Buffer.from(data) : data);
      } else {
        for await (const chunk of data) await ch.write(Kind.data, chunk);
      }
      ch.sendFrame(Kind.eof);
    } catch (err) {
      // The agent's own error (e.g. the open failed) says more than "channel closed".
      if (ch.isClosed) await ch.done;
      // The data failed (a client gone mid-upload): the agent drops what it wrote.
      ch.abort(err instanceof Error ? err : new VmboxError('aborted', String(err)));
      throw err;
    }
    // All sent: the guest has the request timeout to say it is written.
    const stalled = setTimeout(() => ch.abort(this.stalled('writing', path)), this.requestTimeoutMs);
    try {
      return expectPayload<{ size: number }>('size', await ch.done);
    } finally {
      clearTimeout(stalled);
    }
  }

  private stalled(what: string, path: string): VmboxError {
    return new VmboxError('commandTimeout', `${what} ${path}: the guest agent sent nothing for ${this.requestTimeoutMs} ms`);
  }

  /**
   * One question, one answer: the answer is checked when `answer` names its shape, and a
   * guest that never answers fails the call after the request timeout, not never.
   */
  private async request<T>(op: string, fields: Record<string, unknown> = {}, answer?: PayloadKind): Promise<T> {
    const ch = this.open({ op, ...fields });
    if (answer) ch.checkDone = (p) => expectPayload(answer, p);
    const timer = setTimeout(
      () => ch.abort(new VmboxError('commandTimeout', `the guest agent did not answer ${op} within ${this.requestTimeoutMs} ms`)),
      this.requestTimeoutMs,
    );
    try {
      return (await ch.done) as T;
    } finally {
      clearTimeout(timer);
    }
  }

  ping(): Promise<void> {
    return this.request('ping');
  }
  /** The guest's memory, root disk and process count (a disk it cannot measure counts 0). */
  async stats(): Promise<GuestStats> {
    const s = await this.request<Partial<GuestStats>>('stats', {}, 'stats');
    return { memTotalBytes: 0, memUsedBytes: 0, diskTotalBytes: 0, diskUsedBytes: 0, processes: 0, ...s };
  }
  stat(path: string): Promise<FileStat> {
    return this.request('stat', { path }, 'stat');
  }
  async list(path: string): Promise<DirEntry[]> {
    const ch = this.open({ op: 'list', path });
    const entries: DirEntry[] = [];
    const take = (p: unknown) => {
      const batch = expectPayload<{ entries: DirEntry[] }>('entries', p).entries;
      for (const e of batch) checkEntryName(e.name);
      entries.push(...batch);
    };
    ch.onReply = take;
    ch.checkDone = (p) => {
      take(p);
      return p;
    };
    await ch.done;
    return entries;
  }
  mkdir(path: string, mode?: number, as: OwnedBy = {}): Promise<void> {
    return this.request('mkdir', { path, mode, ...as });
  }
  remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    return this.request('remove', { path, recursive: opts.recursive ?? false });
  }
  symlink(target: string, path: string, as: OwnedBy = {}): Promise<void> {
    return this.request('symlink', { target, path, ...as });
  }
  rename(from: string, to: string): Promise<void> {
    return this.request('rename', { from, to });
  }
  /** Hands PID 1 to the image's init (`auto` finds one); the agent serves on as its child. */
  handoffInit(init: { path: string; args?: string[]; env?: string[]; caps?: number }): Promise<{ agentPid: number }> {
    return this.request('init.handoff', { ...init });
  }
  /** Mounts a 9p share (by its tag) or a tmpfs at a guest path, making the path. */
  mount(m: GuestMount): Promise<void> {
    return this.request('mount', { ...m });
  }
  /** Gives the guest its route to the host: every TCP connection and DNS query comes here from now on. */
  netUp(): Promise<void> {
    return this.request('net.up');
  }

  /** A connection to a port on the guest's loopback (a published port). */
  async connectPort(port: number): Promise<GuestConnection> {
    const ch = this.open({ op: 'connect', port });
    const conn = new GuestConnection(ch);
    // Until it is handed over, a refused connect is this call's error, not an unhandled stream error.
    const quiet = () => {};
    conn.on('error', quiet);
    const connected = deferred<void>();
    ch.onReply = () => connected.resolve();
    ch.done.then(
      () => connected.reject(new VmboxError('connectionRefused', `guest port ${port} closed the connection`)),
      (err) => connected.reject(err),
    );
    await connected.promise; // on failure the listener stays: the stream's own error event comes later
    conn.off('error', quiet);
    return conn;
  }

  /** Asks the agent to sync and power off; resolves once it has acknowledged. */
  shutdown(): Promise<void> {
    return this.request('shutdown');
  }
}

/** The process a channel streams: its pid (from the REPLY), output, stdin and exit. */
function processOn(ch: Channel, streams: ExecStreams): GuestProcess {
  const pid = deferred<number>();
  pid.promise.catch(() => {});
  ch.onReply = (p) => pid.resolve(expectPayload<{ pid: number }>('started', p).pid);
  ch.checkDone = (p) => expectPayload('exit', p);
  ch.onData = (kind, data) => (kind === Kind.stderr ? streams.onStderr?.(data) : streams.onStdout?.(data));
  const exit = ch.done.then((v) => v as ExecExit);
  exit.catch((err) => pid.reject(err));
  return {
    channel: ch.id,
    pid: pid.promise,
    exit,
    write: (data) => ch.write(Kind.stdin, typeof data === 'string' ? Buffer.from(data) : data),
    closeStdin: () => ch.sendFrame(Kind.eof),
    kill: (signal = 15) => ch.sendJson(Kind.signal, { signal }),
    resize: (cols, rows) => ch.sendJson(Kind.resize, { cols, rows }),
    abort: (reason) => ch.abort(reason ?? new VmboxError('aborted', 'the command was aborted')),
  };
}
