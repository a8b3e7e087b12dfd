import type { Duplex } from 'node:stream';
import tls from 'node:tls';

import type { Leaf, SandboxCa } from './ca.js';
import type { SecretEvent } from './secret-forward.js';
import { serveRequests } from './secret-proxy.js';
import type { SecretSet } from './secrets.js';

export interface InterceptOptions {
  /** The name the guest asked for in its ClientHello (SNI); the leaf is issued for it and upstream must prove it. */
  serverName: string;
  /** Where the host dials for it (an address it resolved). */
  upstream: { host: string; port: number };
  ca: SandboxCa;
  secrets: SecretSet;
  /** Trust for upstream's certificate instead of the system's (tests). */
  upstreamTls?: { ca?: string | Buffer };
  onEvent: (e: SecretEvent) => void;
  /** Why the guest's TLS failed: no leaf for the name, or a handshake the guest broke off (an untrusted CA, say). */
  onError?: (err: Error) => void;
}

/** One secure context per leaf: building one parses the key and chain again. */
const contexts = new WeakMap<Leaf, tls.SecureContext>();

/**
 * Ends the guest's TLS to a secret's host here, with a leaf of the sandbox's CA, and forwards
 * its HTTP/1.1 requests over TLS of the host's own to the real server, whose certificate must
 * name `serverName` under the system's trust: a value only ever goes to a server that proved
 * the name. The guest is offered HTTP/1.1 only, so clients that prefer h2 fall back to it.
 *
 * `guest` is the connection's stream from its first byte (what was read to find the server name
 * put back). TLS to hosts no secret names is not for this: the host cannot see into it and
 * passes it through as it is. Resolves when the guest connection closes.
 */
export async function interceptTls(guest: Duplex, opts: InterceptOptions): Promise<void> {
  let leaf: Leaf;
  try {
    leaf = await opts.ca.leafFor(opts.serverName);
  } catch (err) {
    guest.destroy();
    opts.onError?.(err as Error);
    return;
  }
  let secureContext = contexts.get(leaf);
  if (!secureContext) {
    secureContext = tls.createSecureContext({ key: leaf.key, cert: leaf.cert });
    contexts.set(leaf, secureContext);
  }
  const socket = new tls.TLSSocket(guest, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
  // A guest that breaks off the handshake ends here (Node's HTTP server takes errors after it). One
  // that does not trust the CA sends an alert the server side does not surface: it just closes.
  let secure = false;
  let failed = false;
  const fail = (err: Error) => {
    if (secure || failed) return;
    failed = true;
    opts.onError?.(err);
    socket.destroy();
  };
  socket.once('secure', () => {
    secure = true;
  });
  socket.once('error', fail);
  socket.once('close', () => fail(new Error(`the guest left TLS to ${opts.serverName} before its end: does it trust the sandbox's CA?`)));
  guest.once('close', () => socket.destroy());
  await serveRequests(socket, {
    host: opts.serverName,
    upstream: opts.upstream,
    tls: {
      servername: opts.serverName,
      ALPNProtocols: ['http/1.1'],
      // Checked against the name the guest asked for, whatever address was dialled.
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(opts.serverName, cert),
      ...(opts.upstreamTls?.ca ? { ca: opts.upstreamTls.ca } : {}),
    },
    secrets: opts.secrets,
    onEvent: opts.onEvent,
  });
}
