import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import WebSocket from 'ws';
import { VmboxError } from '../errors.js';
import { paths } from '../paths.js';
import { ensureLocalServer } from './autostart.js';
import { errorFromApi, ServerUnavailableError } from './errors.js';

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
  /** Called once when this call started the local server. */
  onServerStart?: (info: { pid: number; log: string }) => void;
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

  private constructor(private readonly target: { socketPath: string } | { url: URL; token?: string }) {
    this.agent =
      'url' in target && target.url.protocol === 'https:'
        ? new https.Agent({ keepAlive: true })
        : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  /** Resolves where the server is; a local one is started when absent (unless `autoStart: false`). */
  static async open(opts: ConnectionOptions = {}): Promise<Connection> {
    const url = opts.url ?? process.env.VMBOX_URL;
    if (url) return new Connection({ url: new URL(url), token: opts.token ?? process.env.VMBOX_TOKEN });
    const socketPath = opts.socketPath ?? paths.socket();
    const conn = new Connection({ socketPath });
    if (opts.autoStart === false) return conn;
    await ensureLocalServer(socketPath, () => conn.ping(), opts.onServerStart);
    return conn;
  }

  /** Whether a server answers (false when nothing listens). */
  async ping(): Promise<boolean> {
    try {
      await this.request('GET', '/v1/health', undefined, { timeoutMs: 2000 });
      return true;
    } catch (err) {
      if (err instanceof VmboxError && err.code === 'serverUnavailable') return false;
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
    const res = await this.send(method, path, body, call);
    const text = await readAll(res);
    if (res.statusCode === 204) return undefined as T;
    const json = text ? JSON.parse(text) : undefined;
    if ((res.statusCode ?? 500) >= 400) throw apiError(res.statusCode ?? 500, json);
    return json as T;
  }

  /** The raw response, for streams (logs with follow, a pull's progress). Errors are thrown as in `request`. */
  async stream(path: string, call: CallOptions = {}, init: { method?: string; body?: unknown } = {}): Promise<http.IncomingMessage> {
    const res = await this.send(init.method ?? 'GET', path, init.body, call);
    if ((res.statusCode ?? 500) >= 400) {
      const text = await readAll(res);
      throw apiError(res.statusCode ?? 500, text ? JSON.parse(text) : undefined);
    }
    return res;
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
      req.on('timeout', () => req.destroy(new VmboxError('commandTimeout', `no answer from the vmbox server within ${call.timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'EPIPE') {
          const why =
            err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no vmbox server at' : 'the vmbox server closed the connection at';
          reject(new ServerUnavailableError('serverUnavailable', `${why} ${this.describe()}: start one with vmbox serve`));
        } else if (err.name === 'AbortError') reject(new VmboxError('aborted', 'the call was cancelled'));
        else reject(err);
      });
      req.end(payload);
    });
  }

  /** Streams `body` as the request body (application/octet-stream), with backpressure; returns the JSON answer. */
  async upload<T>(method: string, path: string, body: AsyncIterable<Uint8Array>, call: CallOptions = {}): Promise<T> {
    const o = this.requestOptions(method, path);
    o.headers = { ...o.headers, 'content-type': 'application/octet-stream' };
    o.signal = call.signal;
    o.timeout = call.timeoutMs;
    const mod = o.protocol === 'https:' ? https : http;
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = mod.request(o, resolve);
      req.on('timeout', () => req.destroy(new VmboxError('commandTimeout', `no answer from the vmbox server within ${call.timeoutMs} ms`)));
      req.on('error', (err) => reject(err.name === 'AbortError' ? new VmboxError('aborted', 'the call was cancelled') : err));
      // An early answer (an error) ends the upload; the rest of the body is not sent.
      pipeline(Readable.from(body, { objectMode: false }), req).catch(() => {});
    });
    const text = await readAll(res);
    const json = text ? JSON.parse(text) : undefined;
    if ((res.statusCode ?? 500) >= 400) throw apiError(res.statusCode ?? 500, json);
    return json as T;
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

  private warm(path: string): void {
    const ws = this.websocket(path);
    ws.on('error', () => {}); // a spare that fails is just not used
    ws.once('open', () => holdProcess(ws, false));
    ws.once('close', () => {
      if (this.spares.get(path) === ws) this.spares.delete(path);
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
    for (const ws of this.spares.values()) ws.terminate();
    this.spares.clear();
    this.agent.destroy();
  }
}

/** Whether an open WebSocket keeps the Node process alive (a spare must not). */
function holdProcess(ws: WebSocket, hold: boolean): void {
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  if (hold) socket?.ref();
  else socket?.unref();
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

/** The API's `{code, message, path}` as a typed SDK error. */
export function apiError(status: number, body: unknown): VmboxError {
  const b = (body ?? {}) as { code?: string; message?: string; path?: string };
  return errorFromApi(b.code ?? (status === 401 ? 'unauthorized' : 'ioError'), b.message ?? `HTTP ${status}`, b.path);
}
