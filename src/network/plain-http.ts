import type { Duplex } from 'node:stream';

import type { SecretEvent } from './secret-forward.js';
import { serveRequests } from './secret-proxy.js';
import type { SecretSet } from './secrets.js';

export interface PlainHttpOptions {
  /**
   * The name the host knows `upstream` by: one its own resolver gave for that address, never the
   * guest's Host header alone (without TLS nothing upstream proves a name, so the host must).
   */
  hostname: string;
  upstream: { host: string; port: number };
  secrets: SecretSet;
  onEvent: (e: SecretEvent) => void;
}

/** A method token and a space: how every HTTP/1.x request starts. */
const REQUEST_START = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20} /;

/** Whether a plaintext connection's first bytes read as an HTTP/1.x request (what a caller peeks before choosing). */
export function looksLikeHttp(first: Buffer): boolean {
  return REQUEST_START.test(first.subarray(0, 21).toString('latin1'));
}

/**
 * Carries a plaintext HTTP connection of the guest with the same rules as intercepted TLS:
 * a placeholder of a secret that does not belong to `hostname` blocks its request (403), one
 * that does is replaced — even though, without TLS, the value then crosses the network in the
 * clear: the user named that host for the secret, and plain HTTP is what the guest chose.
 * Anything that is not HTTP/1.x is answered 400 and closed, so a caller passes here only
 * connections whose first bytes `looksLikeHttp`. Resolves when the guest connection closes.
 */
export function proxyPlainHttp(guest: Duplex, opts: PlainHttpOptions): Promise<void> {
  return serveRequests(guest, { host: opts.hostname, upstream: opts.upstream, secrets: opts.secrets, onEvent: opts.onEvent });
}
