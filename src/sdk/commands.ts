import { StringDecoder } from 'node:string_decoder';
import { VmboxError } from '../errors.js';
import type { ExecStart } from '../spec/api.js';
import type { ProcessInfo } from '../spec/processes.js';
import type { CallOptions, Connection } from './connection.js';
import { InvalidArgumentError, NotFoundError, TimeoutError } from './errors.js';
import { sandboxPath } from './paths.js';
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
  /**
   * Called with each chunk of stdout, decoded as UTF-8, every byte of it (see
   * `maxOutputBytes` for what the result keeps). It may return anything; a
   * returned promise holds the command's output back until it settles. A throw
   * or a rejection ends the call with that error.
   */
  onStdout?: (data: string) => unknown;
  /** Called with each chunk of stderr, as `onStdout`. */
  onStderr?: (data: string) => unknown;
  /**
   * How much of each stream the result keeps, in bytes (default 64 MiB, at
   * most 256 MiB). Past it the command runs on, `onStdout`/`onStderr` still get
   * every byte, and the result keeps the first `maxOutputBytes` of that stream
   * and says so with `truncated: true`. That is not an error: the call settles
   * as it would have (a result, or CommandExitError on a non-zero exit).
   */
  maxOutputBytes?: number;
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

/** What `run` runs: a shell command line, an argv, or one of the sandbox's named scripts. */
export type Command = string | string[] | { script: string; args?: string[] };

export interface CommandResult extends CommandExit {
  /** The command as given (a string runs under /bin/sh -c). */
  command: string;
  /** From the call to the command's end, in ms. */
  durationMs: number;
  stdout: string;
  stderr: string;
  /** True when stdout or stderr went past `maxOutputBytes` and the result keeps only its first part. */
  truncated: boolean;
  /** The first error of the command, if the agent reported one. */
  error?: string;
}

/**
 * A command that ended with a non-zero code. Like execa's, the error is the
 * whole result: `command`, `exitCode`, `stdout`, `stderr`, `durationMs`… (and `result`).
 */
export class CommandExitError extends VmboxError {
  override name = 'CommandExitError';
  override readonly code = 'commandFailed' as const;
  readonly command: string;
  readonly exitCode: number;
  readonly signal?: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
  readonly truncated: boolean;
  readonly oomKilled?: boolean;
  constructor(readonly result: CommandResult) {
    const oom = result.oomKilled ? ' (killed for lack of memory: give the sandbox more memoryMib)' : '';
    super('commandFailed', `command exited with code ${result.exitCode}${oom}: ${result.command.slice(0, 200)}${tailOf(result.stderr)}`);
    this.command = result.command;
    this.exitCode = result.exitCode;
    this.signal = result.signal;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.durationMs = result.durationMs;
    this.truncated = result.truncated;
    this.oomKilled = result.oomKilled;
  }
}

/** A command killed at its `timeoutMs` (E2B's TimeoutError); carries what it wrote until then. */
export class CommandTimeoutError extends TimeoutError {
  override name = 'CommandTimeoutError';
  constructor(
    readonly result: CommandResult,
    timeoutMs?: number,
  ) {
    super(
      `command timed out${timeoutMs ? ` after ${timeoutMs} ms` : ''} and was killed: pass a larger timeoutMs (0 for none)${tailOf(result.stderr)}`,
    );
    this.command = result.command;
    this.exitCode = result.exitCode;
    this.signal = result.signal;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.durationMs = result.durationMs;
    this.truncated = result.truncated;
  }
  /** The result so far, as CommandExitError carries it. */
  readonly command: string;
  readonly exitCode: number;
  readonly signal?: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
  readonly truncated: boolean;
}

/** The default of `maxOutputBytes`: what a result keeps of each stream. */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** Below V8's longest string (about 512 Mi UTF-16 units), so a kept stream always fits in one. */
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;

/** What a result keeps of one stream: its first `max` bytes, decoded. */
class Kept {
  text = '';
  bytes = 0;
  truncated = false;
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly max: number) {}

  add(chunk: Buffer): void {
    if (this.truncated) return;
    const room = this.max - this.bytes;
    if (chunk.length <= room) {
      this.text += this.decoder.write(chunk);
      this.bytes += chunk.length;
      return;
    }
    // A character cut at the limit stays in the decoder, never flushed: the text ends on a whole character.
    this.text += this.decoder.write(chunk.subarray(0, room));
    this.bytes = this.max;
    this.truncated = true;
  }
}

function maxOutputOf(v: number | undefined): number {
  if (v === undefined) return DEFAULT_MAX_OUTPUT_BYTES;
  if (!Number.isInteger(v) || v < 0 || v > MAX_OUTPUT_BYTES) {
    throw new InvalidArgumentError(`maxOutputBytes: expected an integer from 0 to ${MAX_OUTPUT_BYTES}, got ${v}`);
  }
  return v;
}

const tailOf = (s: string) => (s.trim() ? `: ${s.trim().split('\n').slice(-3).join(' | ')}` : '');

/**
 * A running command (E2B's CommandHandle): its pid, the output so far,
 * stdin, signals, and `wait()` for the result.
 */
export class CommandHandle {
  private exitInfo?: CommandExit;

  /** @internal */
  constructor(
    readonly pid: number,
    private readonly socket: ProcessSocket,
    private readonly killByPid: (pid: number) => Promise<boolean>,
    private readonly kept: { stdout: Kept; stderr: Kept } = { stdout: new Kept(0), stderr: new Kept(0) },
    private readonly timeoutMs?: number,
    private readonly command = '',
    private readonly startedAt = performance.now(),
  ) {
    socket.exit.then(
      (e) => {
        this.exitInfo = e;
      },
      () => {},
    );
  }

  /** @internal Connects a socket, collecting output for the handle (up to `maxOutputBytes` a stream), and waits until the process has a pid. */
  static async open(
    make: (streams: ProcessStreams) => ProcessSocket,
    opts: Pick<CommandOptions, 'onStdout' | 'onStderr' | 'maxOutputBytes' | 'timeoutMs'> & { command?: string },
    killByPid: (pid: number) => Promise<boolean>,
    onBytes?: (d: Uint8Array) => unknown,
  ): Promise<CommandHandle> {
    const startedAt = performance.now();
    const max = onBytes ? 0 : maxOutputOf(opts.maxOutputBytes);
    const kept = { stdout: new Kept(max), stderr: new Kept(max) };
    // Chunks can split a UTF-8 character; the decoders carry the partial bytes over.
    const out = new StringDecoder('utf8');
    const err = new StringDecoder('utf8');
    const { onStdout, onStderr } = opts;
    const socket = make({
      onStdout: (d) => {
        if (onBytes) return onBytes(d); // a terminal: raw bytes, not kept
        kept.stdout.add(d);
        return onStdout?.(out.write(d));
      },
      onStderr: (d) => {
        kept.stderr.add(d);
        return onStderr?.(err.write(d));
      },
    });
    const pid = await socket.pid;
    return new CommandHandle(pid, socket, killByPid, kept, opts.timeoutMs, opts.command ?? '', startedAt);
  }

  /** Output so far (since this handle connected), up to `maxOutputBytes`. */
  get stdout(): string {
    return this.kept.stdout.text;
  }
  get stderr(): string {
    return this.kept.stderr.text;
  }

  /** The exit code once the command has ended. */
  get exitCode(): number | undefined {
    return this.exitInfo?.exitCode;
  }

  /**
   * Waits for the end. Unless `throwOnError: false`, a command killed at its
   * `timeoutMs` throws CommandTimeoutError (a TimeoutError) and another
   * non-zero exit CommandExitError, both with the result.
   */
  async wait(opts: { throwOnError?: boolean } = {}): Promise<CommandResult> {
    const exit = await this.socket.exit;
    const { stdout, stderr } = this.kept;
    const result: CommandResult = {
      ...exit,
      command: this.command,
      durationMs: Math.round(performance.now() - this.startedAt),
      stdout: stdout.text,
      stderr: stderr.text,
      truncated: stdout.truncated || stderr.truncated,
    };
    if (opts.throwOnError !== false && exit.timedOut) throw new CommandTimeoutError(result, this.timeoutMs);
    if (opts.throwOnError !== false && exit.exitCode !== 0) throw new CommandExitError(result);
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

const base = (ref: string) => sandboxPath(ref);

/** `sandbox.commands`: run commands, E2B-style. */
export class Commands {
  constructor(
    private readonly conn: Connection,
    private readonly ref: string,
  ) {}

  /** Low-level: starts a command and streams its bytes; `exit` resolves with its code. Used by the CLI. */
  exec(argv: string[], opts: ExecOptions = {}): ProcessSocket {
    const { onStdout, onStderr, signal, ...start } = opts;
    return new ProcessSocket(
      this.conn,
      `${base(this.ref)}/exec`,
      { ...(argv.length ? { argv } : {}), ...start },
      { onStdout, onStderr },
      signal,
    );
  }

  /**
   * Runs a command: a string through `/bin/sh -c`, an array as the argv, or
   * `{ script }` one of the sandbox's named scripts (its `args` as $1…).
   * Foreground (default): resolves with the result when it ends; a non-zero
   * exit throws CommandExitError unless `throwOnError: false`.
   * With `background: true`: resolves with a CommandHandle once it started.
   */
  run(cmd: Command, opts: RunOptions & { background: true }): Promise<CommandHandle>;
  run(cmd: Command, opts?: RunOptions & { background?: false }): Promise<CommandResult>;
  async run(cmd: Command, opts: RunOptions = {}): Promise<CommandResult | CommandHandle> {
    const script = typeof cmd === 'object' && !Array.isArray(cmd) ? cmd : undefined;
    const argv = script ? script.args : typeof cmd === 'string' ? ['/bin/sh', '-c', cmd] : (cmd as string[]);
    const timeoutMs = opts.timeoutMs ?? 60_000;
    maxOutputOf(opts.maxOutputBytes);
    const start: ExecStart = {
      ...(argv?.length ? { argv } : {}),
      ...(script ? { script: script.script } : {}),
      env: opts.envs,
      cwd: opts.cwd,
      user: opts.user,
      stdin: opts.stdin || opts.background || undefined,
      timeoutMs: timeoutMs || undefined,
      background: opts.background || undefined,
    };
    const handle = await CommandHandle.open(
      (streams) => new ProcessSocket(this.conn, `${base(this.ref)}/exec`, start, streams, opts.signal),
      { ...opts, timeoutMs, command: script ? `script ${script.script}` : typeof cmd === 'string' ? cmd : (cmd as string[]).join(' ') },
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
  async connect(
    pid: number,
    opts: Pick<CommandOptions, 'onStdout' | 'onStderr' | 'maxOutputBytes' | 'signal'> = {},
  ): Promise<CommandHandle> {
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
