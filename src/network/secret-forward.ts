import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Transform } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import zlib from 'node:zlib';

import { checkRequest } from './secret-request.js';
import type { SecretSet } from './secrets.js';

/** What became of a placeholder; it names the secret, never its value. */
export interface SecretEvent {
  kind: 'replaced' | 'blocked';
  secret: string;
  host: string;
  detail: string;
}

export interface ServeOptions {
  /** The name the connection goes to, as the host vouches for it (see `checkRequest`). */
  host: string;
  /** The address the host dials for it. */
  upstream: { host: string; port: number };
  /** Dial upstream over TLS with these options (server name, trust, identity check); plain TCP without. */
  tls?: ConnectionOptions;
  secrets: SecretSet;
  onEvent: (e: SecretEvent) => void;
}

/** Cookies and tokens make heads large; Node's default of 16 KiB turns some real sites away. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Hop-by-hop headers (RFC 9110 7.6.1): each side's Node sets its own. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

/**
 * Checks and rewrites the request's head, reports what became of its placeholders, and opens the
 * request upstream; or, when it is blocked, calls `refuse` and returns undefined.
 */
export function sendUpstream(
  req: IncomingMessage,
  agent: http.Agent,
  opts: ServeOptions,
  refuse: (status: number, reason: string) => void,
): http.ClientRequest | undefined {
  const detail = `${req.method} ${(req.url ?? '').split('?')[0]?.slice(0, 200)}`;
  const verdict = checkRequest(opts.secrets, opts.host, { method: req.method ?? 'GET', url: req.url ?? '/', rawHeaders: req.rawHeaders });
  if (!verdict.ok) {
    for (const b of verdict.blocked)
      opts.onEvent({ kind: 'blocked', secret: b.secret, host: opts.host, detail: `${b.reason} (${detail})` });
    refuse(403, verdict.blocked.map((b) => b.reason).join('; '));
    return undefined;
  }
  for (const s of verdict.replaced) opts.onEvent({ kind: 'replaced', secret: s.name, host: opts.host, detail });
  return (opts.tls ? https : http).request({
    agent,
    host: opts.upstream.host,
    port: opts.upstream.port,
    method: req.method,
    path: verdict.url,
    maxHeaderSize: MAX_HEADER_BYTES,
    headers: requestHeaders(verdict.rawHeaders, opts.host, req.headers.upgrade !== undefined),
  });
}

/**
 * The guest's headers for upstream: hop-by-hop ones out (an upgrade keeps its pair), `Expect` out
 * (the guest has had its 100 Continue from Node already), and plain bodies asked for.
 */
function requestHeaders(raw: string[], host: string, upgrade: boolean): string[] {
  const hop = hopByHop(raw);
  const out: string[] = [];
  let hasHost = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (lower === 'host') hasHost = true;
    if (lower === 'expect' || lower === 'accept-encoding') continue;
    if (hop.has(lower) && !(upgrade && (lower === 'connection' || lower === 'upgrade'))) continue;
    out.push(name, raw[i + 1] ?? '');
  }
  // A head given as a list gets no Host from Node; an HTTP/1.0 guest may not have sent one.
  if (!hasHost) out.push('Host', host);
  out.push('Accept-Encoding', 'identity');
  return out;
}

/**
 * How a response goes back to the guest: its headers with values turned into placeholders again,
 * and the stages its body passes, decoded if it came encoded and then masked. A body in an
 * encoding Node cannot decode cannot be looked into, and is refused.
 */
export function responseFor(
  upRes: IncomingMessage,
  method: string | undefined,
  secrets: SecretSet,
  keep: readonly string[] = [],
): { headers: string[]; stages: Transform[] } | { refused: string } {
  const bodyless = method === 'HEAD' || upRes.statusCode === 204 || upRes.statusCode === 304 || upRes.headers['content-length'] === '0';
  const coding = bodyless ? undefined : upRes.headers['content-encoding']?.trim().toLowerCase();
  const decoder = coding ? decoderFor(coding) : undefined;
  if (decoder === null) return { refused: `the answer came in content-encoding ${coding}, which the host cannot look into for secrets` };
  const drop = decoder ? ['content-encoding', 'content-length'] : [];
  const hop = hopByHop(upRes.rawHeaders);
  const headers: string[] = [];
  for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) {
    const lower = upRes.rawHeaders[i]?.toLowerCase() ?? '';
    if (((hop.has(lower) || lower === 'transfer-encoding') && !keep.includes(lower)) || drop.includes(lower)) continue;
    headers.push(upRes.rawHeaders[i] ?? '', secrets.conceal(upRes.rawHeaders[i + 1] ?? ''));
  }
  return { headers, stages: [...(decoder ? [decoder] : []), secrets.masker()] };
}

/** The standard hop-by-hop names and those a Connection header lists. */
function hopByHop(raw: string[]): Set<string> {
  const hop = new Set(HOP);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() !== 'connection') continue;
    for (const t of (raw[i + 1] ?? '').split(',')) if (t.trim()) hop.add(t.trim().toLowerCase());
  }
  return hop;
}

/** A decoder for a content-encoding Node has; null for one it has not (or a list of several). */
function decoderFor(coding: string): Transform | undefined | null {
  if (coding === 'identity') return undefined;
  if (coding === 'gzip' || coding === 'x-gzip') return zlib.createGunzip();
  if (coding === 'deflate') return zlib.createInflate();
  if (coding === 'br') return zlib.createBrotliDecompress();
  return null;
}
