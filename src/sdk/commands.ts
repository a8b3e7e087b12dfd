import { StringDecoder } from 'node:string_decoder';
import { VmboxError } from '../errors.js';
import type { ExecStart } from '../spec/api.js';
import type { ProcessInfo } from '../spec/processes.js';
import type { CallOptions, Connection } from './connection.js';
import { NotFoundError } from './errors.js';
import { type CommandExit, ProcessSocket, type ProcessStreams } from './process-socket.js';

export type { CommandExit, ProcessInfo };

export interface CommandOptions extends CallOptions {
  /** Added to the sandbox's environment for this command. */
  envs?: Record<string, string>;
  /** Working directory (default: the sandbox's, else the image's). */
  cwd?: string;
  /** User name, uid, or uid:gid (default: the sandbox's, else the image's). */
  user?: string;
  /**
   * Kill the command after this long; 0 = never (default 60 000 ms, as E2B's).
   * For a foreground command this also bounds the call.
   */
  timeoutMs?: number;
  /** Called with each chunk of stdout, decoded as UTF-8. */
  onStdout?: (data: string) => void | Promise<void>;
  /** Called with each chunk of stderr, decoded as UTF-8. */
  onStderr?: (data: string) => void | Promise<void>;
  /** Open a stdin pipe so `sendStdin` works (default false; always on with `background`). */
  stdin?: boolean;
}

export interface RunOptions extends CommandOptions {
  /** Return a handle as soon as the command starts; it keeps running if this client goes away (default false). */
  background?: boolean;
  /** Throw CommandExitError on a non-zero exit (default true). */
  throwOnError?: boolean;
}

/** Low-level: bytes, not strings, and the API's exec request (its field names and docs) as is. */
export type ExecOptions = Omit<ExecStart, 'argv'> & ProcessStreams & { signal?: AbortSignal };

export interface CommandResult extends CommandExit {
  stdout: string;
  stderr: string;
  /** The first error of the command, if the agent reported one. */
  error?: string;
}

/** A command that ended with a non-zero code; carries the whole result. */
export class CommandExitError extends VmboxError {
  override name = 'CommandExitError';
  constructor(readonly result: CommandResult) {
    super(
      result.timedOut ? 'commandTimeout' : 'invalidArgument',
      result.timedOut
        ? `command timed out and was killed${tailOf(result.stderr)}`
        : `command exited with code ${result.exitCode}${tailOf(result.stderr)}`,
    );
  }
  get exitCode(): number {
    return this.result.exitCode;
  }
  get stdout(): string {
    return this.result.stdout;
  }
  get stderr(): string {
    return this.result.stderr;
  }
}

const tailOf = (s: string) => (s.trim() ? `: ${s.trim().split('\n').slice(-3).join(' | ')}` : '');

/**
 * A running command (E2B's CommandHandle): its pid, the output so far,
 * stdin, signals, and `wait()` for the result.
 */
export class CommandHandle {
  /** Output so far (all of it since this handle connected). */
  stdout = '';
  stderr = '';
  private exitInfo?: CommandExit;

  /** @internal */
  constructor(
    readonly pid: number,
    private readonly socket: ProcessSocket,
    private readonly killByPid: (pid: number) => Promise<boolean>,
  ) {
    socket.exit.then(
      (e) => {
        this.exitInfo = e;
      },
      () => {},
    );
  }

  /** @internal Connects a socket, collecting output into the handle, and waits until the process has a pid. */
  static async open(
    make: (streams: ProcessStreams) => ProcessSocket,
    opts: { onStdout?: (d: string) => void | Promise<void>; onStderr?: (d: string) => void | Promise<void> },
    killByPid: (pid: number) => Promise<boolean>,
    onBytes?: (d: Uint8Array) => void | Promise<void>,
  ): Promise<CommandHandle> {
    let handle: CommandHandle | undefined;
    const early = { stdout: '', stderr: '' };
    // Chunks can split a UTF-8 character; the decoders carry the partial bytes over.
    const out = new StringDecoder('utf8');
    const err = new StringDecoder('utf8');
    const socket = make({
      onStdout: (d) => {
        if (onBytes) return onBytes(d); // a terminal: raw bytes, not accumulated
        const s = out.write(d);
        if (handle) handle.stdout += s;
        else early.stdout += s;
        return opts.onStdout?.(s);
      },
      onStderr: (d) => {
        const s = err.write(d);
        if (handle) handle.stderr += s;
        else early.stderr += s;
        return opts.onStderr?.(s);
      },
    });
    const pid = await socket.pid;
    handle = new CommandHandle(pid, socket, killByPid);
    handle.stdout = early.stdout;
    handle.stderr = early.stderr;
    return handle;
  }

  /** The exit code once the command has ended. */
  get exitCode(): number | undefined {
    return this.exitInfo?.exitCode;
  }

  /** Waits for the end; a non-zero exit throws CommandExitError (with the result) unless `throwOnError: false`. */
  async wait(opts: { throwOnError?: boolean } = {}): Promise<CommandResult> {
    const exit = await this.socket.exit;
    const result = { ...exit, stdout: this.stdout, stderr: this.stderr };
    if (exit.exitCode !== 0 && opts.throwOnError !== false) throw new CommandExitError(result);
    return result;
  }

  /** Kills the command's process group (SIGKILL). False when it had already ended. */
  async kill(): Promise<boolean> {
    if (this.exitInfo) return false;
    return this.killByPid(this.pid);
  }

  /** Writes to the command's stdin; throws InvalidStateError once it has ended. */
  async sendStdin(data: string | Uint8Array): Promise<void> {
    await this.socket.write(data);
  }

  closeStdin(): void {
    this.socket.closeStdin();
  }

  /** Sends a signal (a number, e.g. 15) to the command's process group. */
  signal(signal: number): void {
    this.socket.kill(signal);
  }

  /** Stops streaming; a background command or a terminal keeps running (reconnect with `connect(pid)`). */
  disconnect(): void {
    this.socket.disconnect();
  }

  /** Terminal only: input, as typed. */
  async sendInput(data: string | Uint8Array): Promise<void> {
    await this.socket.write(data);
  }

  /** Terminal only: a new window size (the guest sees SIGWINCH). */
  async resize(size: { cols: number; rows: number }): Promise<void> {
    this.socket.resize(size.cols, size.rows);
  }
}

const base = (ref: string) => `/v1/sandboxes/${encodeURIComponent(ref)}`;

/** `sandbox.commands`: run commands, E2B-style. */
export class Commands {
  constructor(
    private readonly conn: Connection,
    private readonly ref: string,
  ) {}

  /** Low-level: starts a command and streams its bytes; `exit` resolves with its code. Used by the CLI. */
  exec(argv: string[], opts: ExecOptions = {}): ProcessSocket {
    const { onStdout, onStderr, signal, ...start } = opts;
    return new ProcessSocket(this.conn, `${base(this.ref)}/exec`, { argv, ...start }, { onStdout, onStderr }, signal);
  }

  /**
   * Runs a command: a string through `/bin/sh -c`, an array as the argv.
   * Foreground (default): resolves with the result when it ends; a non-zero
   * exit throws CommandExitError unless `throwOnError: false`.
   * With `background: true`: resolves with a CommandHandle once it started.
   */
  run(cmd: string | string[], opts: RunOptions & { background: true }): Promise<CommandHandle>;
  run(cmd: string | string[], opts?: RunOptions & { background?: false }): Promise<CommandResult>;
  async run(cmd: string | string[], opts: RunOptions = {}): Promise<CommandResult | CommandHandle> {
    const argv = typeof cmd === 'string' ? ['/bin/sh', '-c', cmd] : cmd;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const start: ExecStart = {
      argv,
      env: opts.envs,
      cwd: opts.cwd,
      user: opts.user,
      stdin: opts.stdin || opts.background || undefined,
      timeoutMs: timeoutMs || undefined,
      background: opts.background || undefined,
    };
    const handle = await CommandHandle.open(
      (streams) => new ProcessSocket(this.conn, `${base(this.ref)}/exec`, start, streams, opts.signal),
      opts,
      (pid) => this.kill(pid),
    );
    if (opts.background) return handle;
    return handle.wait({ throwOnError: opts.throwOnError });
  }

  /** Processes started through vmbox in this sandbox that are running (or ended and not yet collected). */
  async list(call: CallOptions = {}): Promise<ProcessInfo[]> {
    return this.conn.request<ProcessInfo[]>('GET', `${base(this.ref)}/processes`, undefined, call);
  }

  /**
   * Reattaches to a background command or a terminal by pid: first its output
   * so far (the last 1 MiB of it), then live output and its end. Another client
   * attached to it is let go.
   */
  async connect(pid: number, opts: Pick<CommandOptions, 'onStdout' | 'onStderr' | 'signal'> = {}): Promise<CommandHandle> {
    return CommandHandle.open(
      (streams) => new ProcessSocket(this.conn, `${base(this.ref)}/processes/${pid}/attach`, undefined, streams, opts.signal),
      opts,
      (p) => this.kill(p),
    );
  }

  /** Kills a command's process group by pid (SIGKILL). False when there is no such command or it had ended. */
  async kill(pid: number, call: CallOptions = {}): Promise<boolean> {
    try {
      const r = await this.conn.request<{ exited: boolean }>('POST', `${base(this.ref)}/processes/${pid}/signal`, { signal: 9 }, call);
      return !r.exited;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Writes to the stdin of a command started with `stdin` or `background`, by pid (connects to it). */
  async sendStdin(pid: number, data: string | Uint8Array): Promise<void> {
    const h = await this.connect(pid);
    try {
      await h.sendStdin(data);
    } finally {
      h.disconnect();
    }
  }
}
