import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { SnapshotInfo, TemplateInfo } from '../spec/snapshots.js';
import { type CallOptions, type ConnectionOptions, withConnection } from './connection.js';

export type { SnapshotInfo, TemplateInfo };

export type SnapshotsOpts = ConnectionOptions & CallOptions;

const snapshotPath = (ref: string) => `/v1/snapshots/${encodeURIComponent(ref)}`;

/**
 * The server's snapshots: `Snapshots.list()`, `get`, `remove`. Take one with
 * `sbx.snapshot()`, restore one with `Sandbox.create({ snapshot: name })`.
 */
export class Snapshots {
  private constructor() {}

  static list(opts: SnapshotsOpts = {}): Promise<SnapshotInfo[]> {
    return withConnection(opts, (conn, call) => conn.request('GET', '/v1/snapshots', undefined, call));
  }

  static get(ref: string, opts: SnapshotsOpts = {}): Promise<SnapshotInfo> {
    return withConnection(opts, (conn, call) => conn.request('GET', snapshotPath(ref), undefined, call));
  }

  /** Writes the snapshot as one tar (its memory, a standalone disk) to `path`, for `import` on another vmbox. */
  static export(ref: string, path: string, opts: SnapshotsOpts = {}): Promise<void> {
    return withConnection(opts, async (conn, call) => {
      const res = await conn.stream(`${snapshotPath(ref)}/export`, call);
      await pipeline(res, createWriteStream(path));
    });
  }

  /** Adds the snapshot an export wrote (checked file by file); `name` replaces the one in the archive. */
  static import(path: string, opts: SnapshotsOpts & { name?: string } = {}): Promise<SnapshotInfo> {
    const { name, ...rest } = opts;
    const q = name ? `?${new URLSearchParams({ name })}` : '';
    return withConnection(rest, (conn, call) => conn.upload('POST', `/v1/snapshots/import${q}`, () => createReadStream(path), call));
  }

  /** Removes a snapshot; refused while a sandbox or another snapshot is layered on it. */
  static remove(ref: string, opts: SnapshotsOpts = {}): Promise<void> {
    return withConnection(opts, (conn, call) => conn.request('DELETE', snapshotPath(ref), undefined, call));
  }
}

/**
 * Warm-start templates: an image booted once to "agent ready" and saved, which
 * creates of that image and shape restore instead of booting. Made on their own
 * by the first create; `Templates.warm` makes one ahead of time.
 */
export class Templates {
  private constructor() {}

  static warm(image = 'base', opts: SnapshotsOpts & { cpus?: number; memoryMib?: number } = {}): Promise<TemplateInfo> {
    const { cpus, memoryMib, ...rest } = opts;
    return withConnection(rest, (conn, call) => conn.request('POST', '/v1/templates', { image, cpus, memoryMib }, call));
  }

  static list(opts: SnapshotsOpts = {}): Promise<TemplateInfo[]> {
    return withConnection(opts, (conn, call) => conn.request('GET', '/v1/templates', undefined, call));
  }

  static remove(key: string, opts: SnapshotsOpts = {}): Promise<void> {
    return withConnection(opts, (conn, call) => conn.request('DELETE', `/v1/templates/${encodeURIComponent(key)}`, undefined, call));
  }
}
