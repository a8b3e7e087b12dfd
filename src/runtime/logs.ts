import { closeSync, existsSync, fstatSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import type { LogEntry, LogSource } from '../spec/sandboxes.js';

/** An empty filter means the commands' output (stdout, stderr, output), not vmbox's own lines. */
export function effectiveSources(sources?: readonly LogSource[]): Set<LogSource> {
  return new Set(sources?.length ? sources : ['stdout', 'stderr', 'output']);
}

const CURRENT = 'logs.ndjson';
const PREVIOUS = 'logs.1.ndjson';
const maxBytesDefault = () => Number(process.env.VMBOX_LOG_MAX_BYTES || 8 * 1024 * 1024);

/**
 * One sandbox's log: NDJSON lines in its directory, rotated by size (the
 * current file and one previous), with in-process subscribers for `follow`.
 * Writes are synchronous appends, so a line is on disk before anyone hears of it.
 */
export class SandboxLog {
  private fd: number;
  private size: number;
  private readonly listeners = new Set<{ entry: (e: LogEntry) => void; end?: () => void }>();

  constructor(
    private readonly dir: string,
    private readonly maxBytes = maxBytesDefault(),
  ) {
    this.fd = openSync(join(dir, CURRENT), 'a');
    this.size = fstatSync(this.fd).size;
  }

  append(source: LogSource, data: Buffer | string): void {
    const entry: LogEntry = { t: Date.now(), source, text: typeof data === 'string' ? data : data.toString('utf8') };
    const line = `${JSON.stringify(entry)}\n`;
    if (this.size + line.length > this.maxBytes && this.size > 0) this.rotate();
    try {
      this.size += writeSync(this.fd, line);
    } catch {
      // A full disk must not take the server down: the line is lost, the entry still reaches followers.
    }
    for (const l of this.listeners) l.entry(entry);
  }

  private rotate(): void {
    closeSync(this.fd);
    renameSync(join(this.dir, CURRENT), join(this.dir, PREVIOUS));
    this.fd = openSync(join(this.dir, CURRENT), 'a');
    this.size = 0;
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
    try {
      closeSync(this.fd);
    } catch {}
  }
}

/** Reads a sandbox's stored log without opening it for writing. */
export function readLog(dir: string, opts: { sinceMs?: number; sources?: readonly LogSource[]; tail?: number } = {}): LogEntry[] {
  const want = effectiveSources(opts.sources);
  const out: LogEntry[] = [];
  for (const f of [PREVIOUS, CURRENT]) {
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
      if (want.has(e.source) && (!opts.sinceMs || e.t >= opts.sinceMs)) out.push(e);
    }
  }
  return opts.tail !== undefined ? out.slice(-opts.tail) : out;
}
