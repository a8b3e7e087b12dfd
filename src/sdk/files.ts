import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { VmboxError } from '../errors.js';
import type { EntryInfo, WatchEvent } from '../spec/files.js';
import type { CallOptions, Connection } from './connection.js';
import { errorFromApi, NotFoundError } from './errors.js';
import { sandboxPath } from './paths.js';

export type { EntryInfo };

export interface WriteInfo {
  name: string;
  path: string;
  size: number;
}

/** What `files.write` accepts: text (UTF-8), bytes, a Blob, or a stream of bytes (web or Node). */
export type WriteData = string | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

export interface WriteOptions extends CallOptions {
  /** Permission bits of a new file (default 0o644). */
  mode?: number;
  /** Append instead of replacing (default false). */
  append?: boolean;
  /** Make missing parent directories, as E2B's SDK does (default true); false refuses a missing parent. */
  makeParents?: boolean;
}

export interface FilesystemEvent {
  type: WatchEvent['type'];
  /** Path relative to the watched directory. */
  name: string;
  /** Absolute path in the guest. */
  path: string;
  isDir: boolean;
}

export interface WatchOptions extends CallOptions {
  /** Watch every directory below too, including ones created later (default false). */
  recursive?: boolean;
  /**
   * Called once when the watch ends: with an error (also one thrown by
   * `onEvent`), or without when stopped or the directory was removed. Its
   * return value is ignored.
   */
  onExit?: (err?: Error) => unknown;
}

export interface WatchHandle {
  /** Stops watching. */
  stop(): Promise<void>;
}

type ReadFormat = 'text' | 'bytes' | 'blob' | 'stream';

const q = (o: Record<string, string | number | boolean | undefined>) =>
  new URLSearchParams(Object.entries(o).flatMap(([k, v]): [string, string][] => (v === undefined ? [] : [[k, String(v)]]))).toString();

/** `sandbox.files`: the guest's file system, E2B-style. Content is streamed both ways. */
export class Files {
  constructor(
    private readonly conn: Connection,
    private readonly ref: string,
  ) {}

  private url(rest: string, query: Record<string, string | number | boolean | undefined> = {}): string {
    return sandboxPath(this.ref, `/files${rest}?${q(query)}`);
  }

  /** Reads a file: as text (default), bytes, a Blob, or a web ReadableStream that pulls as you read. */
  read(path: string, opts?: CallOptions & { format?: 'text' }): Promise<string>;
  read(path: string, opts: CallOptions & { format: 'bytes' }): Promise<Uint8Array>;
  read(path: string, opts: CallOptions & { format: 'blob' }): Promise<Blob>;
  read(path: string, opts: CallOptions & { format: 'stream' }): Promise<ReadableStream<Uint8Array>>;
  async read(
    path: string,
    opts: CallOptions & { format?: ReadFormat } = {},
  ): Promise<string | Uint8Array | Blob | ReadableStream<Uint8Array>> {
    const res = await this.conn.stream(this.url('/content', { path }), opts);
    if (opts.format === 'stream') return Readable.toWeb(res) as ReadableStream<Uint8Array>;
    const chunks: Buffer[] = [];
    try {
      for await (const c of res) chunks.push(c as Buffer);
    } catch (err) {
      throw this.conn.transportError(err as NodeJS.ErrnoException); // the server went away mid-file
    }
    const bytes = Buffer.concat(chunks);
    if (opts.format === 'bytes') return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    if (opts.format === 'blob') return new Blob([bytes]);
    return bytes.toString('utf8');
  }

  /**
   * Writes a file (making its parent directories unless `makeParents: false`);
   * or several files, one after another. A file appears whole or not at all:
   * an interrupted write leaves what was there before.
   */
  write(path: string, data: WriteData, opts?: WriteOptions): Promise<WriteInfo>;
  write(files: { path: string; data: WriteData; mode?: number }[], opts?: WriteOptions): Promise<WriteInfo[]>;
  async write(
    pathOrFiles: string | { path: string; data: WriteData; mode?: number }[],
    dataOrOpts?: WriteData | WriteOptions,
    maybeOpts: WriteOptions = {},
  ): Promise<WriteInfo | WriteInfo[]> {
    if (Array.isArray(pathOrFiles)) {
      const opts = (dataOrOpts ?? {}) as WriteOptions;
      const out: WriteInfo[] = [];
      for (const f of pathOrFiles) out.push(await this.writeOne(f.path, f.data, { ...opts, mode: f.mode ?? opts.mode }));
      return out;
    }
    return this.writeOne(pathOrFiles, dataOrOpts as WriteData, maybeOpts);
  }

  private writeOne(path: string, data: WriteData, opts: WriteOptions): Promise<WriteInfo> {
    // Content held in memory can be sent again if the server goes away mid-call: a whole-file write
    // lands whole or not at all, so a repeat is harmless (an append's is not; a stream cannot be re-read).
    const inMemory = typeof data === 'string' || data instanceof Uint8Array || data instanceof ArrayBuffer || data instanceof Blob;
    return this.conn.upload<WriteInfo>(
      'PUT',
      this.url('/content', { path, mode: opts.mode, append: opts.append || undefined, makeParents: opts.makeParents }),
      inMemory && !opts.append ? () => toChunks(data) : toChunks(data),
      opts,
    );
  }

  /** Lists a directory; `depth` > 1 descends into subdirectories (default 1). */
  async list(path: string, opts: CallOptions & { depth?: number } = {}): Promise<EntryInfo[]> {
    return this.conn.request('GET', this.url('/list', { path, depth: opts.depth }), undefined, opts);
  }

  async exists(path: string, opts: CallOptions = {}): Promise<boolean> {
    try {
      await this.getInfo(path, opts);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Type, size, mode, owner and mtime of a path (a symlink itself, not its target). */
  async getInfo(path: string, opts: CallOptions = {}): Promise<EntryInfo> {
    return this.conn.request('GET', this.url('/stat', { path }), undefined, opts);
  }

  /** Makes a directory and its parents; false when it already existed. */
  async makeDir(path: string, opts: CallOptions & { mode?: number } = {}): Promise<boolean> {
    const r = await this.conn.request<{ created: boolean }>('POST', this.url('/mkdir'), { path, mode: opts.mode }, opts);
    return r.created;
  }

  /** Makes a symbolic link at `path` pointing to `target` (kept as given, not resolved), as `fs.symlink`. */
  async symlink(target: string, path: string, opts: CallOptions = {}): Promise<EntryInfo> {
    return this.conn.request('POST', this.url('/symlink'), { target, path }, opts);
  }

  /** Renames (moves) a file or directory; resolves with the entry at its new path. */
  async rename(oldPath: string, newPath: string, opts: CallOptions = {}): Promise<EntryInfo> {
    return this.conn.request('POST', this.url('/rename'), { from: oldPath, to: newPath }, opts);
  }

  /** Removes a file, or a directory with everything in it. */
  async remove(path: string, opts: CallOptions = {}): Promise<void> {
    await this.conn.request('DELETE', this.url('', { path }), undefined, opts);
  }

  /**
   * Watches a directory: `onEvent` gets create, write, remove, rename (the old
   * name) and chmod events. Resolves once the guest watches, so changes made
   * after it are seen. `onEvent` gets events one at a time, in order; it may
   * return anything, and a returned promise is awaited before the next event.
   * A throw or a rejection ends the watch (`onExit` gets the error).
   */
  async watchDir(path: string, onEvent: (e: FilesystemEvent) => unknown, opts: WatchOptions = {}): Promise<WatchHandle> {
    await this.conn.ready();
    const ws = this.conn.websocket(this.url('/watch', { path, recursive: opts.recursive || undefined }));
    let exited = false;
    const exit = (err?: Error) => {
      if (exited) return;
      exited = true;
      try {
        opts.onExit?.(err);
      } catch {} // the watch has ended either way; nobody is left to tell
    };
    let delivered = Promise.resolve();
    const deliver = (e: FilesystemEvent) => {
      delivered = delivered
        .then(() => (exited ? undefined : onEvent(e)))
        .then(undefined, (err: unknown) => {
          exit(err instanceof Error ? err : new Error(String(err)));
          ws.close(1000);
        });
    };
    const timer = opts.timeoutMs ? setTimeout(() => ws.close(1000), opts.timeoutMs) : undefined;
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        reject(err);
        exit(err);
      };
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => {
          const b = safeJson(body);
          fail(errorFromApi(b.code ?? 'ioError', b.message ?? `HTTP ${res.statusCode}`, b.path));
        });
      });
      ws.on('error', (err: NodeJS.ErrnoException) => fail(this.conn.transportError(err)));
      ws.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString()) as
          | { type: 'ready' }
          | { type: 'events'; events: WatchEvent[] }
          | { type: 'end' }
          | { type: 'error'; code: string; message: string; path?: string };
        if (msg.type === 'ready') resolve();
        else if (msg.type === 'events') {
          for (const e of msg.events) deliver({ ...e, name: posix.relative(path, e.path) });
        } else if (msg.type === 'error') fail(errorFromApi(msg.code, msg.message, msg.path));
        else if (msg.type === 'end') exit();
      });
      ws.on('close', () => {
        clearTimeout(timer);
        reject(new VmboxError('channelClosed', `the watch of ${path} closed before it started: try again`));
        exit();
      });
      opts.signal?.addEventListener('abort', () => ws.close(1000), { once: true });
    });
    return {
      stop: async () => {
        clearTimeout(timer);
        if (ws.readyState === ws.CLOSED) return;
        await new Promise<void>((resolve) => {
          ws.once('close', () => resolve());
          ws.close(1000);
        });
      },
    };
  }
}

/** Any accepted input as a stream of byte chunks; big inputs are never copied whole. */
async function* toChunks(data: WriteData): AsyncGenerator<Uint8Array> {
  if (typeof data === 'string') yield Buffer.from(data);
  else if (data instanceof Uint8Array) yield data;
  else if (data instanceof ArrayBuffer) yield new Uint8Array(data);
  else if (data instanceof Blob) yield* streamChunks(data.stream());
  else if (isWebStream(data)) yield* streamChunks(data);
  else yield* data;
}

function isWebStream(d: unknown): d is ReadableStream<Uint8Array> {
  return typeof (d as ReadableStream).getReader === 'function';
}

async function* streamChunks(s: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = s.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

function safeJson(s: string): { code?: string; message?: string; path?: string } {
  try {
    return JSON.parse(s);
  } catch {
    return { message: s };
  }
}
