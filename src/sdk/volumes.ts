import type { VolumeCreate, VolumeInfo } from '../spec/volumes.js';
import { type CallOptions, type ConnectionOptions, withConnection } from './connection.js';

export type { VolumeCreate, VolumeInfo };

export type VolumesOpts = ConnectionOptions & CallOptions;

const volumePath = (name: string) => `/v1/volumes/${encodeURIComponent(name)}`;

/**
 * Named volumes, which sandboxes mount (`mounts: [{ type: 'volume', source, target }]`)
 * and which outlive them: `Volumes.create`, `list`, `get`, `remove`, `prune`.
 */
export class Volumes {
  private constructor() {}

  /** A directory volume (any number of sandboxes at once), or `kind: 'disk'` (an ext4 disk of `sizeMib`, one writer). */
  static create(req: VolumeCreate, opts: VolumesOpts = {}): Promise<VolumeInfo> {
    return withConnection(opts, (conn, call) => conn.request('POST', '/v1/volumes', req, call));
  }

  static list(opts: VolumesOpts = {}): Promise<VolumeInfo[]> {
    return withConnection(opts, (conn, call) => conn.request('GET', '/v1/volumes', undefined, call));
  }

  static get(name: string, opts: VolumesOpts = {}): Promise<VolumeInfo> {
    return withConnection(opts, (conn, call) => conn.request('GET', volumePath(name), undefined, call));
  }

  /** Removes a volume and its files; refused while a sandbox mounts it. */
  static remove(name: string, opts: VolumesOpts = {}): Promise<void> {
    return withConnection(opts, (conn, call) => conn.request('DELETE', volumePath(name), undefined, call));
  }

  /** Removes every volume no sandbox mounts; the names removed. */
  static async prune(opts: VolumesOpts = {}): Promise<string[]> {
    const { removed } = await withConnection(opts, (conn, call) =>
      conn.request<{ removed: string[] }>('POST', '/v1/volumes/prune', {}, call),
    );
    return removed;
  }
}
