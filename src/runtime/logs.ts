import { closeSync, existsSync, fstatSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import type { LogEntry, LogSource } from '../spec/sandboxes.js';

/** An empty filter means the commands' output (stdout, stderr, output), not vmbox's own lines. */
export function effectiveSources(sources?: readonly LogSource[]): Set<LogSource> {
  return new Set(sources?.length ? sources : ['stdout', 'stderr', 'output']);
}

/**
 * Two rotated files, so a chatty command cannot push out why the sandbox
 * ended: the commands' output in one, vmbox's own lines (lifecycle, policy,
 * stop reasons) in the other, each with its own size budget.
 */
const OUTPUT = { current: 'logs.ndjson', previous: 'logs.1.ndjson' };
const SYSTEM = { current: 'system.ndjson', previous: 'system.1.ndjson' };
/** One line per network decision: a busy guest must not push out the lifecycle lines. */
const NETWORK = { current: 'network.ndjson', previous: 'network.1.ndjson' };
const maxBytesDefault = () => Number(process.env.VMBOX_LOG_MAX_BYTES || 8 * 1024 * 1024);
/** System lines are a few per lifecycle step: 1 MiB holds thousands. */
const SYSTEM_MAX_BYTES = 1024 * 1024;

/** An append-only NDJSON file rotated by size: the current file and one previous. */
class RotatingFile {
  private fd: number;
  private size: number;

  constructor(
    private readonly dir: string,
    private readonly names: { current: string; previous: string },
    private readonly maxBytes: number,
  ) {
    this.fd = openSync(join(dir, names.current), 'a');
    this.size = fstatSync(this.fd).size;
  }

  append(line: string): void {
    if (this.size + line.length > this.maxBytes && this.size > 0) this.rotate();
    try {
      this.size += writeSync(this.fd, line);
    } catch {
      // A full disk must not take the server down: the line is lost, the entry still reaches followers.
    }
  }

  private rotate(): void {
    closeSync(this.fd);
    renameSync(join(this.dir, this.names.current), join(this.dir, this.names.previous));
    this.fd = openSync(join(this.dir, this.names.current), 'a');
    this.size = 0;
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {}
  }
}

/**
 * One sandbox's log: NDJSON lines in its directory, rotated by size, with
 * in-process subscribers for `follow`. Writes are synchronous appends, so a
 * line is on disk before anyone hears of it.
 */
export class SandboxLog {
  private readonly output: RotatingFile;
  private readonly system: RotatingFile;
  /** Opened at the first network line: most sandboxes have none. */
  private network?: RotatingFile;
  private readonly listeners = new Set<{ entry: (e: LogEntry) => void; end?: () => void }>();

  constructor(
    private readonly dir: string,
    maxBytes = maxBytesDefault(),
    private readonly systemMaxBytes = SYSTEM_MAX_BYTES,
  ) {
    this.output = new RotatingFile(dir, OUTPUT, maxBytes);
    this.system = new RotatingFile(dir, SYSTEM, systemMaxBytes);
  }

  append(source: LogSource, data: Buffer | string): void {
    const entry: LogEntry = { t: Date.now(), source, text: typeof data === 'string' ? data : data.toString('utf8') };
    this.file(source).append(`${JSON.stringify(entry)}\n`);
    for (const l of this.listeners) l.entry(entry);
  }

  private file(source: LogSource): RotatingFile {
    if (source === 'system') return this.system;
    if (source !== 'network') return this.output;
    this.network ??= new RotatingFile(this.dir, NETWORK, this.systemMaxBytes);
    return this.network;
  }

  /** Stored entries, oldest first, filtered by time and source. */
  read(opts: { sinceMs?: number; sources?: readonly LogSource[]; tail?: number } = {}): LogEntry[] {
    return readLog(this.dir, opts);
  }

  /** `end` is called when the log closes (the sandbox is removed or the server stops). */
  subscribe(entry: (e: LogEntry) => void, end?: () => void): () => void {
    const l = { entry, end };
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  close(): void {
    for (const l of this.listeners) l.end?.();
    this.listeners.clear();
    this.output.close();
    this.system.close();
    this.network?.close();
  }
}

/** Reads a sandbox's stored log without opening it for writing; both files merged by time. */
export function readLog(dir: string, opts: { sinceMs?: number; sources?: readonly LogSource[]; tail?: number } = {}): LogEntry[] {
  const want = effectiveSources(opts.sources);
  const keep = (e: LogEntry) => want.has(e.source) && (!opts.sinceMs || e.t >= opts.sinceMs);
  // Logs written before system lines had a file of their own keep them among the output: read both.
  let out = mergeByTime(readFiles(dir, OUTPUT, keep), want.has('system') ? readFiles(dir, SYSTEM, keep) : []);
  if (want.has('network')) out = mergeByTime(out, readFiles(dir, NETWORK, keep));
  return opts.tail !== undefined ? out.slice(-opts.tail) : out;
}

function readFiles(dir: string, names: { current: string; previous: string }, keep: (e: LogEntry) => boolean): LogEntry[] {
  const out: LogEntry[] = [];
  for (const f of [names.previous, names.current]) {
    const path = join(dir, f);
    if (!existsSync(path)) continue;
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (!line) continue;
      let e: LogEntry;
      try {
        e = JSON.parse(line);
      } catch {
        continue; // a line cut short by a crash
      }
      if (keep(e)) out.push(e);
    }
  }
  return out;
}

/** Two lists each in time order as one; on a tie the first list's entry comes first. */
function mergeByTime(a: LogEntry[], b: LogEntry[]): LogEntry[] {
  if (!b.length) return a;
  if (!a.length) return b;
  const out: LogEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (x && (!y || x.t <= y.t)) {
      out.push(x);
      i++;
    } else if (y) {
      out.push(y);
      j++;
    }
  }
  return out;
}
