import type WebSocket from 'ws';
import { VmboxError } from '../errors.js';
import type { ExecClientMessage, ExecServerMessage } from '../spec/api.js';
import { StreamTag } from '../spec/api.js';
import { apiError, type Connection } from './connection.js';

export interface RunOptions {
  /** Added to the sandbox's environment. */
  envs?: Record<string, string>;
  /** Working directory (default: the image's or the sandbox's). */
  cwd?: string;
  /** User name, uid, or uid:gid (default: the image's). */
  user?: string;
  /** Kill the command after this long (default: never). */
  timeoutMs?: number;
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
  /** Throw CommandExitError on a non-zero exit (default true). */
  throwOnError?: boolean;
  signal?: AbortSignal;
}

export interface ExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** Open a stdin pipe (default false). */
  stdin?: boolean;
  timeoutMs?: number;
  /** Return a promise to hold the guest back until the bytes are handled. */
  onStdout?: (data: Buffer) => void | Promise<void>;
  onStderr?: (data: Buffer) => void | Promise<void>;
  /** Remove the sandbox when this command ends or the connection drops (`vmbox run`). */
  removeWhenDone?: boolean;
  signal?: AbortSignal;
}

export interface CommandExit {
  exitCode: number;
  /** The signal that ended it, if one did. */
  signal?: number;
  timedOut: boolean;
}

export interface CommandResult extends CommandExit {
  stdout: string;
  stderr: string;
}

/** A command that ended with a non-zero code; carries the whole result. */
export class CommandExitError extends VmboxError {
  override name = 'CommandExitError';
  constructor(readonly result: CommandResult) {
    super(result.timedOut ? 'commandTimeout' : 'invalidArgument', `command exited with code ${result.exitCode}${tailOf(result.stderr)}`);
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

/** A command running in a sandbox, streamed over one WebSocket. */
export class CommandHandle {
  readonly pid: Promise<number>;
  readonly exit: Promise<CommandExit>;
  private readonly ws: WebSocket;
  /** Resolves once the start message is sent: stdin and control go after it. */
  private readonly opened: Promise<void>;

  constructor(conn: Connection, ref: string, argv: string[], opts: ExecOptions) {
    const ws = conn.websocket(`/v1/sandboxes/${encodeURIComponent(ref)}/exec`);
    this.ws = ws;
    this.opened = new Promise((resolve) => ws.once('open', () => resolve()));
    let resolvePid!: (pid: number) => void;
    let rejectPid!: (err: Error) => void;
    this.pid = new Promise((res, rej) => {
      resolvePid = res;
      rejectPid = rej;
    });
    this.pid.catch(() => {});
    this.exit = new Promise<CommandExit>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        rejectPid(err);
        reject(err);
        ws.terminate();
      };
      const onAbort = () => fail(new VmboxError('aborted', 'the command was cancelled'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => fail(apiError(res.statusCode ?? 500, safeJson(body))));
      });
      ws.on('open', () => {
        const { onStdout, onStderr, signal, ...start } = opts;
        ws.send(JSON.stringify({ argv, ...start }));
      });
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) {
          const chunk = data.subarray(1);
          const handled = data[0] === StreamTag.stdout ? opts.onStdout?.(chunk) : opts.onStderr?.(chunk);
          // Backpressure: stop reading the socket until the handler is done.
          if (handled) {
            ws.pause();
            handled.finally(() => ws.resume());
          }
          return;
        }
        const msg = JSON.parse(data.toString()) as ExecServerMessage;
        if (msg.type === 'started') resolvePid(msg.pid);
        else if (msg.type === 'exit') {
          settled = true;
          opts.signal?.removeEventListener('abort', onAbort);
          resolve({ exitCode: msg.exitCode, signal: msg.signal, timedOut: msg.timedOut });
        } else if (msg.type === 'error') fail(new VmboxError(msg.code as VmboxError['code'], msg.message));
      });
      ws.on('error', (err: NodeJS.ErrnoException) =>
        fail(
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? new VmboxError('serverUnavailable', `no vmbox server at ${conn.describe()}`)
            : err,
        ),
      );
      ws.on('close', () => fail(new VmboxError('channelClosed', 'the connection to the vmbox server closed before the command ended')));
    });
  }

  /** Sends bytes to the command's stdin (needs `stdin: true`). */
  async write(data: Uint8Array | string): Promise<void> {
    await this.opened;
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const frame = Buffer.allocUnsafe(bytes.length + 1);
    frame[0] = StreamTag.stdin;
    frame.set(bytes, 1);
    await new Promise<void>((resolve, reject) => this.ws.send(frame, (err) => (err ? reject(err) : resolve())));
  }

  closeStdin(): void {
    this.opened.then(() => this.control({ type: 'eof' }));
  }

  private control(msg: ExecClientMessage): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** Sends a signal to the command's process group (default SIGKILL). */
  kill(signal = 9): void {
    this.opened.then(() => this.control({ type: 'signal', signal }));
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return { message: s };
  }
}

/** `sandbox.commands`: run commands, E2B-style. */
export class Commands {
  constructor(
    private readonly conn: Connection,
    private readonly ref: string,
  ) {}

  /** Starts a command and streams it; `exit` resolves with its code. */
  exec(argv: string[], opts: ExecOptions = {}): CommandHandle {
    return new CommandHandle(this.conn, this.ref, argv, opts);
  }

  /**
   * Runs a command to completion. A string runs through `/bin/sh -c`; an array
   * is the argv. A non-zero exit throws CommandExitError unless `throwOnError: false`.
   */
  async run(cmd: string | string[], opts: RunOptions = {}): Promise<CommandResult> {
    const argv = typeof cmd === 'string' ? ['/bin/sh', '-c', cmd] : cmd;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const h = this.exec(argv, {
      env: opts.envs,
      cwd: opts.cwd,
      user: opts.user,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      onStdout: (d) => {
        out.push(d);
        opts.onStdout?.(d.toString());
      },
      onStderr: (d) => {
        err.push(d);
        opts.onStderr?.(d.toString());
      },
    });
    const exit = await h.exit;
    const result = { ...exit, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
    if (exit.exitCode !== 0 && opts.throwOnError !== false) throw new CommandExitError(result);
    return result;
  }
}
