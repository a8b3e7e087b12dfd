import { VmboxError } from '../../errors.js';
import type { SandboxManager } from '../../runtime/manager.js';
import type { SandboxRecord } from '../../runtime/state.js';
import { accessToken, fileSignature, sameSecret } from '../access-token.js';
import type { GuestUsers } from './guest-users.js';

/** Who an envd request acts for: a running sandbox, a guest user and that user's home. */
export interface EnvdCaller {
  sandboxId: string;
  user: string;
  home: string;
}

/** Header lookup over a fetch `Headers` (Connect) or Node's header object (Fastify). */
export type HeaderSource = Headers | Record<string, string | string[] | undefined>;

function header(h: HeaderSource, name: string): string | undefined {
  if (h instanceof Headers) return h.get(name) ?? undefined;
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The port E2B's envd listens on in its sandboxes; its hosts are `49983-<id>.<domain>`. */
export const ENVD_PORT = 49983;
const ENVD_HOST = new RegExp(`^${ENVD_PORT}-([A-Za-z0-9_-]+)\\.`);

export interface SignedQuery {
  path?: string;
  username?: string;
  signature?: string;
  signature_expiration?: string;
}

/**
 * Admission for envd requests. E2B's SDKs name the sandbox in `E2b-Sandbox-Id`
 * (with `E2B_SANDBOX_URL` set) or in the Host; they prove access with the
 * sandbox's `X-Access-Token`, or, for file URLs handed to others, a signature
 * made with it. The guest user is `Authorization: Basic <user:>` or the
 * `username` query, else the sandbox's default user.
 */
export class EnvdAdmission {
  constructor(
    private readonly m: SandboxManager,
    private readonly secret: Buffer,
    private readonly users: GuestUsers,
  ) {}

  async caller(headers: HeaderSource, host?: string, username?: string): Promise<EnvdCaller> {
    const rec = this.sandbox(headers, host);
    if (!sameSecret(header(headers, 'x-access-token'), accessToken(this.secret, rec.id)))
      throw new VmboxError('unauthorized', `missing or wrong X-Access-Token for sandbox ${rec.id}`);
    return this.as(rec, username || basicUser(header(headers, 'authorization')));
  }

  /**
   * A `/files` request: by token like any other, or by a signed URL, which
   * may carry no sandbox id at all (E2B_SANDBOX_URL is one address for every
   * sandbox): then the signature itself says which sandbox made it.
   */
  async fileCaller(headers: HeaderSource, host: string | undefined, q: SignedQuery, operation: 'read' | 'write'): Promise<EnvdCaller> {
    if (!q.signature) return this.caller(headers, host, q.username);
    const expiration = q.signature_expiration === undefined ? undefined : Number(q.signature_expiration);
    if (expiration !== undefined && !(expiration * 1000 > Date.now())) throw new VmboxError('unauthorized', 'signature is already expired');
    const named = this.sandboxId(headers, host);
    const candidates = named ? [this.sandbox(headers, host)] : this.m.list({ states: ['running'] }).map((s) => this.m.find(s.id));
    const signed = { path: q.path ?? '', operation, user: q.username ?? '', expiration };
    const rec = candidates.find((r) => sameSecret(q.signature, fileSignature(accessToken(this.secret, r.id), signed)));
    if (!rec) throw new VmboxError('unauthorized', 'the file URL signature does not match: make a new one with downloadUrl/uploadUrl');
    return this.as(rec, q.username);
  }

  /** The sandbox a request names, when it runs (no token needed: E2B's health check has none). */
  async running(headers: HeaderSource, host?: string): Promise<string> {
    return this.sandbox(headers, host).id;
  }

  private sandboxId(headers: HeaderSource, host?: string): string | undefined {
    return header(headers, 'e2b-sandbox-id') ?? ENVD_HOST.exec(host ?? '')?.[1];
  }

  /** The running sandbox a request names; anything else is E2B's "not found or timed out". */
  private sandbox(headers: HeaderSource, host?: string): SandboxRecord {
    const id = this.sandboxId(headers, host);
    if (!id)
      throw new VmboxError('invalidArgument', 'no sandbox named: send E2b-Sandbox-Id (E2B_SANDBOX_URL) or use a 49983-<id>.<domain> host');
    const rec = this.m.db.find(id);
    if (!rec || rec.removing || rec.state !== 'running') throw new VmboxError('sandboxNotFound', `sandbox ${id} is not running`);
    return rec;
  }

  private async as(rec: SandboxRecord, user: string | undefined): Promise<EnvdCaller> {
    const name = user || rec.spec.user || rec.image.config.user || 'root';
    return { sandboxId: rec.id, user: name, home: await this.users.home(rec.id, name) };
  }
}

/** `Basic base64("user:")`, as E2B's SDKs name the guest user. */
function basicUser(authorization: string | undefined): string | undefined {
  const m = /^Basic\s+(.+)$/i.exec(authorization ?? '');
  if (!m?.[1]) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString();
  return decoded.slice(0, decoded.includes(':') ? decoded.indexOf(':') : undefined) || undefined;
}
