import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type {
  Credentials,
  ImageDetail,
  ImageSummary,
  PruneResult,
  PullMessage,
  PullPolicy,
  PullProgress,
  RemoveResult,
} from '../spec/images.js';
import { type CallOptions, type ConnectionOptions, withConnection } from './connection.js';
import { ConnectionError, errorFromApi } from './errors.js';
import { authFromEnv, insecureFromEnv } from './registry-env.js';

export type { Credentials, ImageDetail, ImageSummary, PruneResult, PullPolicy, PullProgress, RemoveResult };

export type ImagesOpts = ConnectionOptions & CallOptions;

export interface PullOpts extends ImagesOpts {
  /** `always` fetches the manifest again; `if-missing` (default) only when the server has no such image; `never` only checks. */
  policy?: PullPolicy;
  /** `os/arch[/variant]` from a multi-platform image (default: the server's). */
  platform?: string;
  /** Plain HTTP to the reference's registry (default: whether `VMBOX_INSECURE_REGISTRIES` lists it). */
  insecure?: boolean;
  /** Login for the registry (default: `VMBOX_REGISTRY_AUTH`, else the server's own configuration). */
  auth?: Credentials;
  /** The layers once the manifest is known, then byte counts per layer as they arrive. */
  onProgress?: (e: PullProgress) => void;
}

export interface ImportOpts extends ImagesOpts {
  /** Name of the image; required for a plain rootfs tarball, else taken from the archive. */
  name?: string;
}

const path = (reference: string) => `/v1/images/${encodeURIComponent(reference)}`;

/** The server's images: `Images.pull('alpine:3.20', { onProgress })`, `list`, `inspect`, `import`, `remove`, `prune`. */
export class Images {
  private constructor() {}

  /** Pulls an image onto the server (or builds a built-in one); resolves with what it runs with. */
  static pull(reference: string, opts: PullOpts = {}): Promise<ImageDetail> {
    const { policy, platform, insecure, auth, onProgress, ...rest } = opts;
    const body = {
      reference,
      policy,
      platform,
      insecure: insecure ?? (insecureFromEnv(reference) || undefined),
      auth: auth ?? authFromEnv(reference),
    };
    return withConnection(rest, async (conn, call) => {
      const res = await conn.stream('/v1/images/pull', call, { method: 'POST', body });
      const lines = createInterface({ input: res });
      // A server gone mid-pull ends the stream: the outcome is unknown, as for any call cut off.
      const cut = new Promise<never>((_, reject) => res.once('error', (err) => reject(conn.transportError(err))));
      cut.catch(() => {});
      const read = async () => {
        for await (const line of lines) {
          if (!line) continue;
          const m = JSON.parse(line) as PullMessage;
          if (m.type === 'done') return m.image;
          if (m.type === 'error') throw errorFromApi(m.code, m.message);
          onProgress?.(m);
        }
        throw new ConnectionError(`the vmbox server ended the pull of ${reference} without an answer: try again`, 'closed');
      };
      return Promise.race([read(), cut]);
    });
  }

  /** Images on the server, built-in ones first, each with the sandboxes made from it. */
  static list(opts: ImagesOpts = {}): Promise<ImageSummary[]> {
    return withConnection(opts, (conn, call) => conn.request('GET', '/v1/images', undefined, call));
  }

  static inspect(reference: string, opts: ImagesOpts = {}): Promise<ImageDetail> {
    return withConnection(opts, (conn, call) => conn.request('GET', path(reference), undefined, call));
  }

  /**
   * Uploads an image: a rootfs tarball, a docker save archive, or an OCI image
   * layout (a directory here, sent as a tar). `source` is a local path or the archive's bytes.
   */
  static import(source: string | AsyncIterable<Uint8Array>, opts: ImportOpts = {}): Promise<ImageDetail> {
    const { name, ...rest } = opts;
    const q = name ? `?${new URLSearchParams({ name })}` : '';
    return withConnection(rest, async (conn, call) => {
      let body = source;
      if (typeof source === 'string') {
        let isDir: boolean;
        try {
          isDir = statSync(source).isDirectory();
        } catch {
          throw errorFromApi('notFound', `${source} does not exist`);
        }
        // The tar writer is loaded only for a directory: every CLI command pays for what it imports.
        body = isDir ? (await import('./tar-dir.js')).tarDirectory(source) : createReadStream(source);
      }
      return conn.upload('POST', `/v1/images/import${q}`, body as AsyncIterable<Uint8Array>, call);
    });
  }

  /** Untags an image; refused while sandboxes use it unless `force` (their disk then stays until they are removed). */
  static remove(reference: string, opts: ImagesOpts & { force?: boolean } = {}): Promise<RemoveResult> {
    const { force, ...rest } = opts;
    return withConnection(rest, (conn, call) => conn.request('DELETE', `${path(reference)}${force ? '?force=true' : ''}`, undefined, call));
  }

  /** Deletes blobs and disks that no image and no sandbox refers to. */
  static prune(opts: ImagesOpts = {}): Promise<PruneResult> {
    return withConnection(opts, (conn, call) => conn.request('POST', '/v1/images/prune', undefined, call));
  }
}
