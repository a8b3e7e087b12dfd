import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import type { GuestConnection } from '../guest/connection.js';
import { interceptTls } from './intercept-tls.js';
import { looksLikeHttp, proxyPlainHttp } from './plain-http.js';
import type { CompiledPolicy, ConnectDecision } from './policy.js';
import { type Bandwidth, type ByteCounts, relay } from './relay.js';
import type { SecretEvent } from './secret-forward.js';
import type { SandboxSecrets } from './secret-state.js';
import { SNIFF_LIMIT, sniffServerName } from './sniff.js';

/** One guest connection the policy let out: what it was decided on, to re-decide on a policy change. */
export interface OpenConnection {
  address: string;
  port: number;
  names: string[];
  serverName?: string;
  close(): void;
}

export interface EgressContext {
  policy(): CompiledPolicy;
  bandwidth: Bandwidth;
  /** The sandbox's secrets, when it has any: their connections go through the secret proxies. */
  secrets?: SandboxSecrets & { upstreamCa?: string };
  /** How the connection ended (allowed ones) or why it was refused. */
  report(r: { address: string; port: number; name?: string; allowed: boolean; reason: string; bytes?: ByteCounts }): void;
}

interface Sniffed {
  first: Buffer;
  kind: ReturnType<typeof sniffServerName>['kind'];
  serverName?: string;
}

/**
 * Carries one allowed guest connection to its destination. The guest's first
 * bytes are read before any leave: a TLS SNI or HTTP Host there must agree with
 * the policy and with what the guest resolved, or the connection is closed.
 * Without secrets the host dials at once (a server that speaks first, like SSH,
 * answers without delay) and holds only the guest's bytes; with secrets it waits
 * for them, to choose between the secret proxies and a plain relay.
 */
export function carry(
  ctx: EgressContext,
  conn: GuestConnection,
  to: { address: string; port: number },
  names: string[],
  decision: ConnectDecision,
  open: Set<OpenConnection>,
): void {
  const dial = decision.dial ?? { host: to.address, port: to.port };
  const entry: OpenConnection = { address: to.address, port: to.port, names, close: () => conn.destroy() };
  open.add(entry);
  let refused: string | undefined;
  const checked = sniff(conn).then((first): Sniffed => {
    const seen = sniffServerName(first);
    // Only TLS and HTTP name their server; other protocols (SSH, a database) are decided by address alone.
    if (seen.kind !== 'tls' && seen.kind !== 'http') return { first, kind: seen.kind };
    const serverName = seen.kind === 'tls' ? seen.serverName : seen.host;
    entry.serverName = serverName;
    const d = ctx.policy().decideServerName({ ip: to.address, port: to.port, names, serverName });
    if (!d.allowed) {
      refused = d.reason;
      throw new Error(d.reason);
    }
    return { first, kind: seen.kind, serverName };
  });
  const done = (bytes: ByteCounts | undefined, error?: string) => {
    open.delete(entry);
    const name = entry.serverName ?? names[0];
    if (refused) ctx.report({ ...to, name, allowed: false, reason: refused });
    else ctx.report({ ...to, name, allowed: true, reason: error ? `${decision.reason}; ended: ${error}` : decision.reason, bytes });
  };
  const plainRelay = (gate: Promise<Buffer>) => {
    const upstream = connect({ host: dial.host, port: dial.port, allowHalfOpen: true });
    const handle = relay(upstream, conn, ctx.bandwidth, done, gate);
    entry.close = () => handle.close();
  };
  const secrets = ctx.secrets;
  if (!secrets) {
    plainRelay(checked.then((s) => s.first));
    return;
  }
  checked.then(
    (s) => {
      const onEvent = (e: SecretEvent) =>
        ctx.report({ ...to, name: e.host, allowed: e.kind === 'replaced', reason: `secret ${e.secret} ${e.kind}: ${e.detail}` });
      if (s.kind === 'tls' && s.serverName && secrets.set.forHost(s.serverName).length) {
        conn.unshift(s.first);
        const upstreamTls = secrets.upstreamCa ? { ca: secrets.upstreamCa } : undefined;
        interceptTls(conn, { serverName: s.serverName, upstream: dial, ca: secrets.ca, secrets: secrets.set, upstreamTls, onEvent }).then(
          () => done(undefined),
          (err: Error) => done(undefined, err.message),
        );
      } else if (looksLikeHttp(s.first)) {
        // The value goes only where the host itself resolved: the Host header counts only if it is one of those names.
        const hostname = s.serverName && names.includes(s.serverName) ? s.serverName : (names[0] ?? to.address);
        conn.unshift(s.first);
        proxyPlainHttp(conn, { hostname, upstream: dial, secrets: secrets.set, onEvent }).then(
          () => done(undefined),
          (err: Error) => done(undefined, err.message),
        );
      } else plainRelay(Promise.resolve(s.first));
    },
    () => {
      conn.destroy();
      done(undefined);
    },
  );
}

/**
 * The guest's first bytes, up to the point a name can be told (or SNIFF_LIMIT);
 * empty when the guest half-closes first. Reads in paused mode so the relay's
 * flowing reads take over where this stops.
 */
function sniff(conn: Readable): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const stop = () => {
      conn.off('readable', onReadable);
      conn.off('end', stop);
      conn.off('close', stop);
      resolve(Buffer.concat(chunks, length));
    };
    const onReadable = () => {
      for (let chunk = conn.read() as Buffer | null; chunk; chunk = conn.read() as Buffer | null) {
        chunks.push(chunk);
        length += chunk.length;
      }
      const first = Buffer.concat(chunks, length);
      if (length >= SNIFF_LIMIT || sniffServerName(first).kind !== 'incomplete') stop();
    };
    conn.on('readable', onReadable);
    conn.once('end', stop);
    conn.once('close', stop);
  });
}
