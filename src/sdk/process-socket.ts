import type WebSocket from 'ws';
import { VmboxError } from '../errors.js';
import type { ExecClientMessage, ExecServerMessage, ExecStart } from '../spec/api.js';
import { StreamTag } from '../spec/api.js';
import type { ExecExit } from '../spec/processes.js';
import { apiError, type Connection } from './connection.js';
import { errorFromApi, InvalidStateError, ServerUnavailableError } from './errors.js';

/** How a command ended (the API's exit shape). */
export type CommandExit = ExecExit;

export interface ProcessStreams {
  /** Return a promise to hold the guest back until the bytes are handled. */
  onStdout?: (data: Buffer) => void | Promise<void>;
  onStderr?: (data: Buffer) => void | Promise<void>;
}

/**
 * One guest process over one WebSocket (see src/server/routes/exec.ts):
 * started by an ExecStart message, or attached to by pid. Output is read
 * with backpressure; stdin and control go out in order after the open.
 */
export class ProcessSocket {
  readonly pid: Promise<number>;
  readonly exit: Promise<CommandExit>;
  private readonly ws: WebSocket;
  private readonly opened: Promise<void>;
  private ended?: CommandExit;
  private failure?: Error;

  constructor(conn: Connection, path: string, start: ExecStart | undefined, streams: ProcessStreams, signal?: AbortSignal) {
    // A command may get a socket that is already open (a spare): see Connection.commandSocket.
    const ws = start ? conn.commandSocket(path) : conn.websocket(path);
    this.ws = ws;
    const isOpen = ws.readyState === ws.OPEN;
    this.opened = isOpen
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('close', () => reject(this.failure ?? new VmboxError('channelClosed', 'the connection closed')));
        });
    this.opened.catch(() => {});
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
        this.failure = err;
        rejectPid(err);
        reject(err);
        ws.terminate();
      };
      const onAbort = () => fail(new VmboxError('aborted', 'the call was cancelled'));
      if (signal?.aborted) queueMicrotask(onAbort);
      signal?.addEventListener('abort', onAbort, { once: true });
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => fail(apiError(res.statusCode ?? 500, safeJson(body))));
      });
      if (start && isOpen) ws.send(JSON.stringify(start));
      else if (start) ws.on('open', () => ws.send(JSON.stringify(start)));
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) {
          const chunk = data.subarray(1);
          const handled = data[0] === StreamTag.stdout ? streams.onStdout?.(chunk) : streams.onStderr?.(chunk);
          // Backpressure: stop reading the socket until the handler is done.
          if (handled) {
            ws.pause();
            handled.finally(() => ws.resume());
          }
          return;
        }
        const msg = JSON.parse(data.toString()) as ExecServerMessage & { path?: string };
        if (msg.type === 'started') resolvePid(msg.pid);
        else if (msg.type === 'exit') {
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          this.ended = { exitCode: msg.exitCode, signal: msg.signal, timedOut: msg.timedOut };
          resolve(this.ended);
        } else if (msg.type === 'error') fail(errorFromApi(msg.code, msg.message, msg.path));
      });
      ws.on('error', (err: NodeJS.ErrnoException) =>
        fail(
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? new ServerUnavailableError('serverUnavailable', `no vmbox server at ${conn.describe()}`)
            : err,
        ),
      );
      ws.on('close', () => fail(new VmboxError('channelClosed', 'the connection to the vmbox server closed before the process ended')));
    });
    this.exit.catch(() => {});
  }

  /** Sends bytes to the process's stdin; a process that has ended says so. */
  async write(data: Uint8Array | string): Promise<void> {
    await this.opened;
    this.checkRunning();
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const frame = Buffer.allocUnsafe(bytes.length + 1);
    frame[0] = StreamTag.stdin;
    frame.set(bytes, 1);
    await new Promise<void>((resolve, reject) => this.ws.send(frame, (err) => (err ? reject(err) : resolve())));
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
    if (!this.ended && !this.failure) this.failure = new VmboxError('aborted', 'disconnected from the process');
    this.ws.close(1000);
  }

  private checkRunning(): void {
    if (this.ended) {
      throw new InvalidStateError('invalidState', `the process has exited (code ${this.ended.exitCode}): its stdin is closed`);
    }
    if (this.failure) throw this.failure;
  }

  private control(msg: ExecClientMessage): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(msg));
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return { message: s };
  }
}
