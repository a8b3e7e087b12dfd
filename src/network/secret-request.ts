import { isIP } from 'node:net';

import { hostMatches, normalizeHost, type Secret, type SecretSet } from './secrets.js';

/** An HTTP/1.1 request's head, as Node's parser gives it. */
export interface RequestHead {
  method: string;
  url: string;
  /** Names and values in turn, in the order and case the guest sent them. */
  rawHeaders: readonly string[];
}

export type Verdict =
  | { ok: true; url: string; rawHeaders: string[]; replaced: Secret[] }
  | { ok: false; blocked: { secret: string; reason: string }[] };

/** Credentials as `Authorization: Basic base64(user:password)`, where git and package tools put a token. */
const BASIC = /^(basic[ \t]+)([A-Za-z0-9+/]+={0,2})[ \t]*$/i;

/**
 * Decides a request bound for `host` (the name the host vouches for: the TLS server name it
 * verifies upstream, or the name it resolved itself) by the placeholders in its request
 * line and headers. Each must belong to a secret of that host, and the request must name
 * that same host, else it is blocked; if all do, they are replaced by the values. Bodies
 * are left as they are: see `serveRequests`.
 */
export function checkRequest(secrets: SecretSet, host: string, head: RequestHead): Verdict {
  const found = new Set(secrets.findPlaceholders(head.url));
  const headers = [...head.rawHeaders];
  for (let i = 1; i < headers.length; i += 2) {
    for (const s of secrets.findPlaceholders(headers[i] ?? '')) found.add(s);
    for (const s of secrets.findPlaceholders(basicCredentials(headers[i - 1], headers[i]) ?? '')) found.add(s);
  }
  if (!found.size) return { ok: true, url: head.url, rawHeaders: headers, replaced: [] };

  const blocked: { secret: string; reason: string }[] = [];
  const named = namedHosts(head);
  for (const s of found) {
    if (!s.hosts.some((p) => hostMatches(p, host))) blocked.push({ secret: s.name, reason: `secret ${s.name} may not be sent to ${host}` });
    // The upstream answers for `host`, but a server behind it (a CDN's) may route by the name in the request.
    else if (named.some((h) => h !== normalizeHost(host))) {
      blocked.push({ secret: s.name, reason: `the request names ${named.join(', ')}, not ${host}, the host secret ${s.name} goes to` });
    }
  }
  if (blocked.length) return { ok: false, blocked };

  const replaced = [...found];
  for (let i = 1; i < headers.length; i += 2) {
    const value = headers[i] ?? '';
    const basic = basicCredentials(headers[i - 1], value);
    headers[i] =
      basic !== undefined && secrets.findPlaceholders(basic).length
        ? `${BASIC.exec(value)?.[1]}${Buffer.from(secrets.reveal(basic, replaced)).toString('base64')}`
        : secrets.reveal(value, replaced);
  }
  return { ok: true, url: secrets.reveal(head.url, replaced), rawHeaders: headers, replaced };
}

/** The decoded `user:password` of Basic credentials in an Authorization header, if that is what the header holds. */
function basicCredentials(name: string | undefined, value: string | undefined): string | undefined {
  const lower = name?.toLowerCase();
  if (lower !== 'authorization' && lower !== 'proxy-authorization') return undefined;
  const m = BASIC.exec(value ?? '');
  return m?.[2] ? Buffer.from(m[2], 'base64').toString('utf8') : undefined;
}

/** The hosts a request names: its Host headers and an absolute-form target's authority. */
function namedHosts(head: RequestHead): string[] {
  const names: string[] = [];
  for (let i = 0; i < head.rawHeaders.length; i += 2) {
    if (head.rawHeaders[i]?.toLowerCase() === 'host') names.push(hostOf(head.rawHeaders[i + 1] ?? ''));
  }
  if (!head.url.startsWith('/') && head.url !== '*') {
    try {
      names.push(normalizeHost(new URL(head.url).hostname.replace(/^\[(.*)\]$/, '$1')));
    } catch {
      names.push(head.url);
    }
  }
  return names;
}

/** `name[:port]` or `[v6]:port` → the name, normalized. */
function hostOf(authority: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(authority);
  if (v6?.[1]) return normalizeHost(v6[1]);
  return normalizeHost(isIP(authority) === 6 ? authority : authority.replace(/:\d*$/, ''));
}
