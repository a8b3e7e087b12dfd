import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { VmboxError } from '../errors.js';
import { basicHeader, type Credentials, credentialsFor, parseChallenge } from './auth.js';
import { formatReference, type ImageReference, registryHost } from './reference.js';

export interface RegistryOptions {
  /** Registries spoken to over plain HTTP (`VMBOX_INSECURE_REGISTRIES`, comma-separated). */
  insecure?: string[];
  retries?: number;
  /** A login given with the request, used before `VMBOX_REGISTRY_AUTH` and `~/.docker/config.json`. */
  credentials?: Credentials;
}

export type Progress = (event: { digest: string; received: number; total: number; done?: boolean }) => void;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * OCI distribution API v2 client on Node's fetch. Handles the token dance
 * (anonymous or with credentials), Basic auth, retries on 429/5xx and dropped
 * connections, and streams blobs to disk through a sha256 check.
 */
export class RegistryClient {
  private readonly insecure: Set<string>;
  private readonly retries: number;
  private readonly tokens = new Map<string, string>();
  private readonly credentials?: Credentials;

  constructor(opts: RegistryOptions = {}) {
    this.credentials = opts.credentials;
    const fromEnv = (process.env.VMBOX_INSECURE_REGISTRIES ?? '').split(',').filter(Boolean);
    this.insecure = new Set([...(opts.insecure ?? []), ...fromEnv]);
    this.retries = opts.retries ?? 4;
  }

  private base(registry: string): string {
    const scheme = this.insecure.has(registry) ? 'http' : 'https';
    return `${scheme}://${registryHost(registry)}/v2`;
  }

  /** GET with auth and retries; returns the successful response. */
  async get(ref: ImageReference, path: string, headers: Record<string, string> = {}): Promise<Response> {
    const url = `${this.base(ref.registry)}/${ref.repository}/${path}`;
    const scope = `repository:${ref.repository}:pull`;
    let lastError: unknown;
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (attempt > 0) await sleep(Math.min(200 * 2 ** (attempt - 1), 3000));
      let res: Response;
      try {
        res = await fetch(url, { headers: { ...headers, ...this.authHeader(ref.registry, scope) }, redirect: 'follow' });
        if (res.status === 401) {
          await res.body?.cancel();
          await this.authenticate(ref.registry, scope, res.headers.get('www-authenticate') ?? '');
          res = await fetch(url, { headers: { ...headers, ...this.authHeader(ref.registry, scope) }, redirect: 'follow' });
        }
      } catch (err) {
        if (err instanceof VmboxError) throw err; // an answer (auth refused), not a network failure
        if (!this.insecure.has(ref.registry) && speaksPlainHttp(err)) throw plainHttpError(ref.registry, err);
        lastError = err;
        continue; // connection refused or dropped: retry
      }
      if (res.ok || res.status === 206) return res;
      await res.body?.cancel();
      if (res.status === 429 || res.status >= 500) {
        lastError = new Error(`HTTP ${res.status}`);
        continue;
      }
      if (res.status === 401 || res.status === 403) {
        throw new VmboxError(
          'permissionDenied',
          `${ref.registry} refused access to ${ref.repository} (HTTP ${res.status}): log in with docker login, or set VMBOX_REGISTRY_AUTH=${ref.registry}=user:password`,
        );
      }
      if (res.status === 404)
        throw new VmboxError('imageNotFound', `${formatReference(ref)}: ${path.split('/')[0]} not found on ${ref.registry}`);
      throw new VmboxError('ioError', `${ref.registry} answered HTTP ${res.status} for ${path}`);
    }
    const why =
      lastError instanceof Error ? (lastError.cause instanceof Error ? lastError.cause.message : lastError.message) : String(lastError);
    throw new VmboxError('ioError', `cannot reach ${ref.registry} after ${this.retries + 1} attempts: ${why}`, { cause: lastError });
  }

  private authHeader(registry: string, scope: string): Record<string, string> {
    const token = this.tokens.get(`${registry} ${scope}`);
    return token ? { authorization: token } : {};
  }

  private async authenticate(registry: string, scope: string, challenge: string): Promise<void> {
    const { scheme, params } = parseChallenge(challenge);
    const creds = this.credentials ?? credentialsFor(registry);
    if (scheme === 'basic') {
      if (!creds)
        throw new VmboxError(
          'permissionDenied',
          `${registry} needs a login: set VMBOX_REGISTRY_AUTH=${registry}=user:password or use docker login`,
        );
      this.tokens.set(`${registry} ${scope}`, basicHeader(creds));
      return;
    }
    if (scheme !== 'bearer' || !params.realm)
      throw new VmboxError('permissionDenied', `${registry} asked for unsupported authentication '${challenge}'`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    url.searchParams.set('scope', params.scope ?? scope);
    const res = await fetch(url, { headers: creds ? { authorization: basicHeader(creds) } : {} });
    if (!res.ok) {
      throw new VmboxError('permissionDenied', `the token server of ${registry} refused (HTTP ${res.status}): check your credentials`);
    }
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new VmboxError('permissionDenied', `the token server of ${registry} returned no token`);
    this.tokens.set(`${registry} ${scope}`, `Bearer ${token}`);
  }

  /** Fetches a manifest or index by tag or digest; returns its bytes and media type. */
  async manifest(ref: ImageReference, reference: string, accept: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
    const res = await this.get(ref, `manifests/${reference}`, { accept });
    const body = Buffer.from(await res.arrayBuffer());
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new VmboxError('ioError', `manifest ${reference} from ${ref.registry} hashes to ${digest}: refusing it`);
    }
    const mediaType =
      (res.headers.get('content-type') ?? '').split(';')[0]?.trim() ||
      (JSON.parse(body.toString()) as { mediaType?: string }).mediaType ||
      '';
    return { body, mediaType, digest };
  }

  /**
   * Streams a blob to `dest` through a sha256 check. A partial download is
   * resumed with a Range request; a mismatch deletes it and fails.
   */
  async downloadBlob(ref: ImageReference, digest: string, dest: string, progress?: Progress): Promise<void> {
    const partial = `${dest}.partial`;
    mkdirSync(dirname(dest), { recursive: true });
    let hash = createHash('sha256');
    for (let attempt = 0; ; attempt++) {
      const have = existsSync(partial) ? statSync(partial).size : 0;
      try {
        const res = await this.get(ref, `blobs/${digest}`, have > 0 ? { range: `bytes=${have}-` } : {});
        const resumed = res.status === 206 && have > 0;
        // The hash follows the bytes on disk: on a resume, re-read the part already there.
        hash = resumed ? await hashPrefix(partial) : createHash('sha256');
        const total = Number(res.headers.get('content-length') ?? 0) + (resumed ? have : 0);
        let received = resumed ? have : 0;
        const h = hash;
        const counter = async function* (src: AsyncIterable<Uint8Array>) {
          for await (const chunk of src) {
            received += chunk.length;
            h.update(chunk);
            progress?.({ digest, received, total });
            yield chunk;
          }
        };
        if (!res.body) throw new VmboxError('ioError', `empty body for blob ${digest}`);
        await pipeline(
          Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
          counter,
          createWriteStream(partial, { flags: resumed ? 'a' : 'w' }),
        );
        break;
      } catch (err) {
        if (err instanceof VmboxError || attempt >= this.retries) {
          throw err instanceof VmboxError
            ? err
            : new VmboxError('ioError', `downloading ${digest} from ${ref.registry} failed: ${(err as Error).message}`);
        }
        await sleep(Math.min(200 * 2 ** attempt, 3000)); // connection dropped mid-blob: resume
      }
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest) {
      rmSync(partial, { force: true });
      throw new VmboxError(
        'ioError',
        `blob ${digest} from ${ref.registry} hashes to ${actual}: discarded (the registry served corrupt data)`,
      );
    }
    renameSync(partial, dest);
    progress?.({ digest, received: statSync(dest).size, total: statSync(dest).size, done: true });
  }
}

/**
 * A TLS hello answered in plain HTTP: OpenSSL reads the HTTP status line as a
 * record header and fails with "wrong version number" (or "packet length too long").
 */
function speaksPlainHttp(err: unknown): boolean {
  for (let e = err as { code?: string; message?: string; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || e.code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') return true;
    if (/wrong version number|packet length too long/i.test(e.message ?? '')) return true;
  }
  return false;
}

function plainHttpError(registry: string, cause: unknown): VmboxError {
  return new VmboxError(
    'invalidArgument',
    `${registry} does not speak TLS (it answers plain HTTP): if you trust the network to it, pass --insecure ` +
      `(SDK: insecure: true) or list it in VMBOX_INSECURE_REGISTRIES=${registry}`,
    { cause },
  );
}

async function hashPrefix(path: string) {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h;
}
