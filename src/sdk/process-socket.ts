import type WebSocket from 'ws';
import { VmboxError } from '../errors.js';
import type { ExecClientMessage, ExecServerMessage, ExecStart, RunStart } from '../spec/api.js';
import { StreamTag } from '../spec/api.js';
import type { ExecExit } from '../spec/processes.js';
import type { SandboxInfo } from '../spec/sandboxes.js';
import { deferred } from '../util/deferred.js';
import { apiError, type Connection } from './connection.js';
import { ConnectionError, errorFromApi, InvalidStateError } from './errors.js';

/** How a command ended (the API's exit shape). */
export type CommandExit = ExecExit;

export interface ProcessStreams {
  /**
   * Called with each chunk, in order, one call at a time. It may return
   * anything; a returned thenable (a promise) holds the guest back until it
   * settles. A throw or a rejection ends the call with that error.
   */
  onStdout?: (data: Buffer) => unknown;
  onStderr?: (data: Buffer) => unknown;
  /** A run's sandbox exists (before its command starts). */
  onCreated?: (sandbox: SandboxInfo) => unknown;
}

/** What the socket delivered, handled strictly in order (output, then the end). */
type Inbound = { data: Buffer; isBinary: boolean } | { end: Error };

/**
 * One guest process over one WebSocket (see src/server/routes/exec.ts):
 * started by an ExecStart message, or attached to by pid. Output is read
 * with backpressure; stdin and control go out in order after the open.
 */
export class ProcessSocket {
  readonly pid: Promise<number>;
  readonly exit: Promise<CommandExit>;
  private ws?: WebSocket;
  private readonly opened: Promise<void>;
  private readonly pidD = deferred<number>();
  private readonly exitD = deferred<CommandExit>();
  private ended?: CommandExit;
  private failure?: Error;
  private settled = false;
  /**
   * Messages wait here while a handler's thenable is pending: the socket is
   * paused then, but ws still emits what it had already read. One queue, no
   * listener per chunk, however slow the reader.
   */
  private readonly inbox: Inbound[] = [];
  private busy = false;
  private readonly onAbort = () => this.fail(new VmboxError('aborted', 'the call was cancelled'));

  constructor(
    private readonly conn: Connection,
    private readonly path: string,
    private readonly start: ExecStart | RunStart | undefined,
    private readonly streams: ProcessStreams,
    private readonly signal?: AbortSignal,
  ) {
    this.pid = this.pidD.promise;
    this.exit = this.exitD.promise;
    this.pid.catch(() => {});
    this.exit.catch(() => {});
    if (signal?.aborted) queueMicrotask(this.onAbort);
    else signal?.addEventListener('abort', this.onAbort, { once: true });
    this.opened = this.connect();
    this.opened.catch(() => {});
  }

  /** Opens the socket; when nobody listened (the local server went away), starts the server again and retries once. */
  private async connect(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await this.conn.ready();
      if (this.settled) throw this.failure;
      // A command may get a socket that is already open (a spare): see Connection.commandSocket.
      // A command may take a socket opened ahead of time (a spare); a run or an attach opens its own.
      const ws = this.start && 'argv' in this.start ? this.conn.commandSocket(this.path) : this.conn.websocket(this.path);
      this.ws = ws;
      try {
        await this.bind(ws);
        return;
      } catch (err) {
        const refused = err instanceof VmboxError && err.code === 'serverUnavailable';
        if (attempt === 0 && refused && !this.settled && (await this.conn.revive())) continue;
        this.fail(err as Error);
        throw err;
      }
    }
  }

  /** Wires `ws` to this process; resolves once it is open (the start message sent), rejects if it never opens. */
  private bind(ws: WebSocket): Promise<void> {
    return new Promise((resolve, reject) => {
      let open = false;
      const onOpen = () => {
        open = true;
        if (this.start) ws.send(JSON.stringify(this.start));
        resolve();
      };
      const end = (err: Error) => (open ? this.receive({ end: err }) : reject(err));
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => reject(apiError(res.statusCode ?? 500, safeJson(body))));
      });
      ws.on('message', (data: Buffer, isBinary: boolean) => this.receive({ data, isBinary }));
      ws.on('error', (err: NodeJS.ErrnoException) => end(this.conn.transportError(err)));
      ws.on('close', () =>
        end(
          new ConnectionError(
            `the connection to the vmbox server at ${this.conn.describe()} closed before the process ended: the server went away; the next call reconnects`,
            'closed',
          ),
        ),
      );
      if (ws.readyState === ws.OPEN) onOpen();
      else ws.once('open', onOpen);
    });
  }

  private receive(msg: Inbound): void {
    if (this.settled) return;
    this.inbox.push(msg);
    this.pump();
  }

  /** Hands queued messages over in order; a handler's thenable pauses the socket until it settles (backpressure). */
  private pump(): void {
    while (!this.busy && !this.settled && this.inbox.length > 0) {
      const msg = this.inbox.shift() as Inbound;
      let handled: unknown;
      try {
        handled = this.handle(msg);
      } catch (err) {
        this.fail(err instanceof Error ? err : new VmboxError('ioError', String(err)));
        return;
      }
      if (!isThenable(handled)) continue;
      this.busy = true;
      this.ws?.pause();
      Promise.resolve(handled).then(
        () => {
          this.busy = false;
          if (this.settled) return;
          this.ws?.resume();
          this.pump();
        },
        (err: unknown) => this.fail(err instanceof Error ? err : new VmboxError('ioError', String(err))),
      );
    }
  }

  private handle(msg: Inbound): unknown {
    if ('end' in msg) return this.fail(msg.end);
    if (msg.isBinary) {
      const chunk = msg.data.subarray(1);
      return msg.data[0] === StreamTag.stdout ? this.streams.onStdout?.(chunk) : this.streams.onStderr?.(chunk);
    }
    const m = parseMessage(msg.data);
    if (m.type === 'created') return this.streams.onCreated?.(m.sandbox);
    if (m.type === 'started') this.pidD.resolve(m.pid);
    else if (m.type === 'exit') {
      this.settled = true;
      this.signal?.removeEventListener('abort', this.onAbort);
      this.ended = { exitCode: m.exitCode, signal: m.signal, timedOut: m.timedOut, ...(m.oomKilled ? { oomKilled: true } : {}) };
      this.exitD.resolve(this.ended);
    } else if (m.type === 'error') this.fail(errorFromApi(m.code, m.message, m.path));
    return undefined;
  }

  /** Ends the call with `err`; the socket is dropped, so the agent kills a foreground process. */
  private fail(err: Error, how: 'terminate' | 'close' = 'terminate'): void {
    if (this.settled) return;
    this.settled = true;
    this.failure = err;
    this.inbox.length = 0;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.pidD.reject(err);
    this.exitD.reject(err);
    if (how === 'close') this.ws?.close(1000);
    else this.ws?.terminate();
  }

  /** Sends bytes to the process's stdin; a process that has ended says so. */
  async write(data: Uint8Array | string): Promise<void> {
    await this.opened;
    this.checkRunning();
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const frame = Buffer.allocUnsafe(bytes.length + 1);
    frame[0] = StreamTag.stdin;
    frame.set(bytes, 1);
    const ws = this.ws as WebSocket;
    await new Promise<void>((resolve, reject) => ws.send(frame, (err) => (err ? reject(this.conn.transportError(err)) : resolve())));
  }

  closeStdin(): void {
    this.opened.then(() => this.control({ type: 'eof' })).catch(() => {});
  }

  /** Signals the process group (default SIGKILL). */
  kill(signal = 9): void {
    this.opened.then(() => this.control({ type: 'signal', signal })).catch(() => {});
  }

  resize(cols: number, rows: number): void {
    this.opened.then(() => this.control({ type: 'resize', cols, rows })).catch(() => {});
  }

  /** Closes the socket: a background process or a terminal keeps running, any other is killed by the agent. */
  disconnect(): void {
    if (this.settled) this.ws?.close(1000);
    else this.fail(new VmboxError('aborted', 'disconnected from the process'), 'close');
  }

  private checkRunning(): void {
    if (this.ended) {
      throw new InvalidStateError(`the process has exited (code ${this.ended.exitCode}): its stdin is closed`);
    }
    if (this.failure) throw this.failure;
  }

  private control(msg: ExecClientMessage): void {
    const ws = this.ws;
    if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
  }
}

/** Whether a callback's return value is to be awaited: only a thenable is. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function parseMessage(data: Buffer): ExecServerMessage & { path?: string } {
  try {
    return JSON.parse(data.toString()) as ExecServerMessage & { path?: string };
  } catch {
    throw new VmboxError('protocolError', 'the vmbox server sent a malformed exec message: is the server the same version as the SDK?');
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return { message: s };
  }
}
