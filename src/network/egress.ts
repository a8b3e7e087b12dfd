import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import type { GuestConnection } from '../guest/connection.js';
import type { CompiledPolicy, ConnectDecision } from './policy.js';
import { type Bandwidth, type ByteCounts, relay } from './relay.js';
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
  /** How the connection ended (allowed ones) or why it was refused. */
  report(r: { address: string; port: number; name?: string; allowed: boolean; reason: string; bytes?: ByteCounts }): void;
}

/**
 * Carries one allowed guest connection to its destination. The host dials the
 * upstream at once (a server that speaks first, like SSH, answers without delay),
 * but holds the guest's bytes until it has seen its first ones: a TLS SNI or HTTP
 * Host there must agree with the policy and with what the guest resolved, or the
 * connection is closed before a byte of it leaves.
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
  const upstream = connect({ host: dial.host, port: dial.port, allowHalfOpen: true });
  const entry: OpenConnection = { address: to.address, port: to.port, names, close: () => handle.close() };
  const gate = sniff(conn).then((first) => {
    const seen = sniffServerName(first);
    // Only TLS and HTTP name their server; other protocols (SSH, a database) are decided by address alone.
    if (seen.kind !== 'tls' && seen.kind !== 'http') return first;
    const serverName = seen.kind === 'tls' ? seen.serverName : seen.host;
    entry.serverName = serverName;
    const d = ctx.policy().decideServerName({ ip: to.address, port: to.port, names, serverName });
    if (!d.allowed) throw new Error(d.reason);
    return first;
  });
  open.add(entry);
  const handle = relay(
    upstream,
    conn,
    ctx.bandwidth,
    (bytes, error) => {
      open.delete(entry);
      const name = entry.serverName ?? names[0];
      if (error && bytes.out === 0 && gateFailed) ctx.report({ ...to, name, allowed: false, reason: error });
      else ctx.report({ ...to, name, allowed: true, reason: error ? `${decision.reason}; ended: ${error}` : decision.reason, bytes });
    },
    gate,
  );
  let gateFailed = false;
  gate.catch(() => {
    gateFailed = true;
  });
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
