import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import WebSocket from 'ws';
import { VmboxError } from '../errors.js';
import { paths } from '../paths.js';
import { ensureLocalServer } from './autostart.js';
import { ConnectionError, errorFromApi, ServerUnavailableError, TimeoutError } from './errors.js';

export interface ConnectionOptions {
  /**
   * A remote server, e.g. `http://10.0.0.2:7070`. Default: `VMBOX_URL`, else
   * the local server on `$VMBOX_HOME/vmbox.sock`, started when absent.
   */
  url?: string;
  /** Bearer token for `url`. Default: `VMBOX_TOKEN`. */
  token?: string;
  /** Unix socket of a local server. Default: `$VMBOX_HOME/vmbox.sock`. */
  socketPath?: string;
  /** Start the local server when nobody answers on its socket (default true). */
  autoStart?: boolean;
  /** Called each time this connection started the local server (its return value is ignored). */
  onServerStart?: (info: { pid: number; log: string }) => unknown;
}

/** Per call: a deadline and a way to cancel. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** HTTP and WebSocket to a vmbox server, over its unix socket or TCP. */
export class Connection {
  private readonly agent: http.Agent;
  private readonly spares = new Map<string, WebSocket>();
  private closed = false;
  /** The server was seen going away: make sure one answers before the next call. */
  private down = false;
  private reviving?: Promise<void>;

  private constructor(
    private readonly target: { socketPath: string } | { url: URL; token?: string },
    private readonly autostart: Pick<ConnectionOptions, 'autoStart' | 'onServerStart'> = {},
  ) {
    this.agent =
      'url' in target && target.url.protocol === 'https:'
        ? new https.Agent({ keepAlive: true })
        : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  /** Another connection to the same server (a handle of its own, closed on its own). */
  sibling(): Connection {
    return new Connection(this.target, this.autostart);
  }

  /** Resolves where the server is; a local one is started when absent (unless `autoStart: false`). */
  static async open(opts: ConnectionOptions = {}): Promise<Connection> {
    const url = opts.url ?? process.env.VMBOX_URL;
    if (url) return new Connection({ url: new URL(url), token: opts.token ?? process.env.VMBOX_TOKEN });
    const socketPath = opts.socketPath ?? paths.socket();
    const conn = new Connection({ socketPath }, { autoStart: opts.autoStart, onServerStart: opts.onServerStart });
    if (opts.autoStart === false) return conn;
    await ensureLocalServer(socketPath, () => conn.ping(), opts.onServerStart);
    conn.down = false;
    return conn;
  }

  /**
   * Starts the local server again after it went away (a crash, a restart, a
   * `kill -9`), once for all the calls that noticed. Sandboxes outlive their
   * server and the new one reattaches them, so handles keep working. False
   * when this connection may not: a remote server, or `autoStart: false`.
   */
  async revive(): Promise<boolean> {
    if (!('socketPath' in this.target) || this.autostart.autoStart === false || this.closed) return false;
    const socketPath = this.target.socketPath;
    this.reviving ??= ensureLocalServer(socketPath, () => this.ping(), this.autostart.onServerStart).finally(() => {
      this.reviving = undefined;
    });
    await this.reviving;
    this.down = false;
    return true;
  }

  /** Before opening a stream that cannot be replayed: a server that was seen going away is brought back first. */
  async ready(): Promise<void> {
    if (this.down) await this.revive();
  }

  /** A transport error as a typed one; notes that the server may be gone. */
  transportError(err: NodeJS.ErrnoException): VmboxError {
    if (err instanceof VmboxError) return err;
    this.down = true;
    // Spares opened to a server that went away may not have heard so yet: none is handed out.
    this.dropSpares();
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      return new ServerUnavailableError(`no vmbox server at ${this.describe()}: start one with vmbox serve`);
    }
    const reason = err.code ?? 'closed';
    return new ConnectionError(
      `the connection to the vmbox server at ${this.describe()} broke during the call (${reason}): the server went away; the next call reconnects`,
      reason,
      { cause: err },
    );
  }

  /** Whether a server answers (false when nothing listens). */
  async ping(): Promise<boolean> {
    try {
      const res = await this.send('GET', '/v1/health', undefined, { timeoutMs: 2000 });
      await readAll(res, this);
      return true;
    } catch (err) {
      if (err instanceof VmboxError && (err.code === 'serverUnavailable' || err.code === 'connectionLost')) return false;
      throw err;
    }
  }

  private requestOptions(method: string, path: string): http.RequestOptions {
    if ('socketPath' in this.target) return { socketPath: this.target.socketPath, path, method, agent: this.agent };
    const u = new URL(path, this.target.url);
    return {
      protocol: u.protocol,
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      method,
      agent: this.agent,
      headers: this.target.token ? { authorization: `Bearer ${this.target.token}` } : {},
    };
  }

  /** A JSON request; API errors come back as VmboxError with the server's code. */
  async request<T>(method: string, path: string, body?: unknown, call: CallOptions = {}): Promise<T> {
    const res = await this.sendRetrying(method, path, body, call);
    const text = await readAll(res, this);
    if (res.statusCode === 204) return undefined as T;
    const json = text ? JSON.parse(text) : undefined;
    if ((res.statusCode ?? 500) >= 400) throw apiError(res.statusCode ?? 500, json);
    return json as T;
  }

  /** The raw response, for streams (logs with follow, a pull's progress). Errors are thrown as in `request`. */
  async stream(path: string, call: CallOptions = {}, init: { method?: string; body?: unknown } = {}): Promise<http.IncomingMessage> {
    const res = await this.sendRetrying(init.method ?? 'GET', path, init.body, call);
    if ((res.statusCode ?? 500) >= 400) {
      const text = await readAll(res, this);
      throw apiError(res.statusCode ?? 500, text ? JSON.parse(text) : undefined);
    }
    return res;
  }

  /**
   * `send`, once more when the first try cannot have reached a server: nobody
   * listened (the local server is started again first), or a kept-alive socket
   * turned out to be closed by a server that went away.
   */
  private async sendRetrying(method: string, path: string, body: unknown, call: CallOptions): Promise<http.IncomingMessage> {
    try {
      return await this.send(method, path, body, call);
    } catch (err) {
      if (!unsent.has(err as object) || call.signal?.aborted) throw err;
      // Also after a stale kept-alive socket: the server behind it may be gone too.
      const revived = await this.revive();
      if (!revived && (err as VmboxError).code === 'serverUnavailable') throw err;
      return this.send(method, path, body, call);
    }
  }

  private send(method: string, path: string, body: unknown, call: CallOptions): Promise<http.IncomingMessage> {
    const o = this.requestOptions(method, path);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    o.headers = { ...o.headers, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) };
    o.signal = call.signal;
    o.timeout = call.timeoutMs;
    const mod = o.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(o, resolve);
      req.on('timeout', () =>
        req.destroy(new TimeoutError(`no answer from the vmbox server within ${call.timeoutMs} ms: pass a larger timeoutMs`)),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') return reject(new VmboxError('aborted', 'the call was cancelled'));
        const typed = this.transportError(err);
        const refused = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
        // A kept-alive socket found closed is sent again only for a GET: another method may have reached the server.
        const stale = req.reusedSocket && method === 'GET' && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
        if (refused || stale) unsent.add(typed);
        reject(typed);
      });
      req.end(payload);
    });
  }

  /**
   * Streams `body` as the request body (application/octet-stream), with
   * backpressure; returns the JSON answer. The body is read only once the
   * connection is made, so when nobody listened (the local server went away)
   * the call is sent again, to a server started again.
   */
  async upload<T>(
    method: string,
    path: string,
    body: AsyncIterable<Uint8Array> | (() => AsyncIterable<Uint8Array>),
    call: CallOptions = {},
  ): Promise<T> {
    await this.ready();
    // A body given as a function can be read again: its upload is sent again too when the server went
    // away before answering (the caller says a repeat is harmless, e.g. a whole-file write).
    const replayable = typeof body === 'function';
    const open = () => (typeof body === 'function' ? body() : body);
    let res: http.IncomingMessage;
    try {
      res = await this.uploadOnce(method, path, open(), call);
    } catch (err) {
      const lost = replayable && (err as VmboxError).code === 'connectionLost';
      if ((!unsent.has(err as object) && !lost) || call.signal?.aborted || !(await this.revive())) throw err;
      res = await this.uploadOnce(method, path, open(), call);
    }
    const text = await readAll(res, this);
    const json = text ? JSON.parse(text) : undefined;
    if ((res.statusCode ?? 500) >= 400) throw apiError(res.statusCode ?? 500, json);
    return json as T;
  }

  private uploadOnce(method: string, path: string, body: AsyncIterable<Uint8Array>, call: CallOptions): Promise<http.IncomingMessage> {
    const o = this.requestOptions(method, path);
    // A connection of its own: a kept-alive one may turn out closed once part of the body was read, and that cannot be sent again.
    o.agent = false;
    o.headers = { ...o.headers, 'content-type': 'application/octet-stream' };
    o.signal = call.signal;
    o.timeout = call.timeoutMs;
    const mod = o.protocol === 'https:' ? https : http;
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = mod.request(o, resolve);
      let reading = false;
      req.on('timeout', () =>
        req.destroy(new TimeoutError(`no answer from the vmbox server within ${call.timeoutMs} ms: pass a larger timeoutMs`)),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') return reject(new VmboxError('aborted', 'the call was cancelled'));
        const typed = this.transportError(err);
        if (!reading && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) unsent.add(typed);
        reject(typed);
      });
      req.once('socket', (socket: Socket) => {
        const go = () => {
          reading = true;
          // An early answer (an error) ends the upload; the rest of the body is not sent.
          pipeline(Readable.from(body, { objectMode: false }), req).catch(() => {});
        };
        if (socket.connecting) socket.once('connect', go);
        else go();
      });
    });
  }

  /**
   * A WebSocket for a command on `path`: one opened ahead of time when it is
   * ready, so the call skips the upgrade round trip (about a millisecond of a
   * few), and another is opened for the next call. Spares do not keep the
   * process alive.
   */
  commandSocket(path: string): WebSocket {
    const spare = this.spares.get(path);
    this.spares.delete(path);
    let ws: WebSocket;
    if (spare && spare.readyState === spare.OPEN) {
      ws = spare;
      holdProcess(ws, true);
    } else {
      spare?.terminate();
      ws = this.websocket(path);
    }
    if (!this.closed) this.warm(path);
    return ws;
  }

  private dropSpares(): void {
    for (const ws of this.spares.values()) ws.terminate();
    this.spares.clear();
  }

  private warm(path: string): void {
    const ws = this.websocket(path);
    ws.on('error', () => {}); // a spare that fails is just not used
    ws.once('open', () => holdProcess(ws, false));
    ws.once('close', () => {
      // A spare nobody took closed under us: the server went away (or restarted).
      if (this.spares.get(path) !== ws) return;
      this.spares.delete(path);
      if (!this.closed) this.down = true;
    });
    this.spares.set(path, ws);
  }

  /** A WebSocket to an API path (exec). */
  websocket(path: string): WebSocket {
    if ('socketPath' in this.target) return new WebSocket(`ws+unix://${this.target.socketPath}:${path}`, { perMessageDeflate: false });
    const u = new URL(path, this.target.url);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return new WebSocket(u, {
      perMessageDeflate: false,
      headers: this.target.token ? { authorization: `Bearer ${this.target.token}` } : {},
    });
  }

  describe(): string {
    return 'socketPath' in this.target ? this.target.socketPath : this.target.url.href;
  }

  close(): void {
    this.closed = true;
    this.dropSpares();
    this.agent.destroy();
  }
}

/** Whether an open WebSocket keeps the Node process alive (a spare must not). */
function holdProcess(ws: WebSocket, hold: boolean): void {
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  if (hold) socket?.ref();
  else socket?.unref();
}

/** Errors of a first try that reached no server: safe to send again. */
const unsent = new WeakSet<object>();

function readAll(res: http.IncomingMessage, conn: Connection): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (err) => reject(conn.transportError(err)));
  });
}

/** The API's `{code, message, path}` as a typed SDK error. */
export function apiError(status: number, body: unknown): VmboxError {
  const b = (body ?? {}) as { code?: string; message?: string; path?: string };
  return errorFromApi(b.code ?? (status === 401 ? 'unauthorized' : 'ioError'), b.message ?? `HTTP ${status}`, b.path);
}

/** Runs `fn` on a connection of its own, closed after (the static SDK calls: images, snapshots, templates). */
export async function withConnection<T>(
  opts: ConnectionOptions & CallOptions,
  fn: (conn: Connection, call: CallOptions) => Promise<T>,
): Promise<T> {
  const { timeoutMs, signal, ...connect } = opts;
  const conn = await Connection.open(connect);
  try {
    return await fn(conn, { timeoutMs, signal });
  } finally {
    conn.close();
  }
}
