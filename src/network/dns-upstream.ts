import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import packet, { type DecodedPacket } from 'dns-packet';
import { SpecError } from '../errors.js';
import { ipv4Problem } from './addresses.js';
import { normalizeName } from './rules.js';

/**
 * The host side's own DNS queries for a sandbox: one A question at a time over
 * UDP, to each upstream server in turn until one answers.
 */

export interface Upstream {
  host: string;
  port: number;
}

export type UpstreamResult = { ok: true; packet: DecodedPacket; server: string } | { ok: false; reason: string };

/** Answers that say "this server cannot help", so the next one is asked; NOERROR and NXDOMAIN are final. */
const TRY_NEXT = new Set(['SERVFAIL', 'REFUSED', 'NOTIMP', 'FORMERR']);
/** EDNS0 with the payload size DNS Flag Day 2020 settled on: large enough that an A answer is rarely truncated, small enough not to fragment. */
const EDNS_PAYLOAD = 1232;

/** `IPv4[:port]`, port 53 by default; throws a SpecError naming `field`. */
export function parseUpstream(text: string, field: string): Upstream {
  const m = /^([^:]*)(?::([0-9]{1,5}))?$/.exec(text);
  const host = m?.[1] ?? text;
  const problem = ipv4Problem(host);
  if (!m || problem)
    throw new SpecError(field, `${problem ?? `"${text}" is not IPv4[:port]`}; a DNS server looks like 1.1.1.1 or 10.0.0.2:5353`);
  const port = m[2] === undefined ? 53 : Number(m[2]);
  if (port < 1 || port > 65535) throw new SpecError(field, `port ${port} is out of range 1-65535`);
  return { host, port };
}

/** The IPv4 `nameserver` lines of a resolv.conf (this host's by default), in order; IPv6 ones are skipped. */
export function hostNameservers(text = readFileSync('/etc/resolv.conf', 'utf8')): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m?.[1] && !ipv4Problem(m[1])) out.push({ host: m[1], port: 53 });
  }
  return out;
}

/** Asks each server in turn for `name`'s A records; each gets `timeoutMs`. Never throws. */
export async function askUpstream(
  servers: readonly Upstream[],
  name: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<UpstreamResult> {
  const failures: string[] = [];
  for (const s of servers) {
    if (signal.aborted) return { ok: false, reason: 'the resolver was closed' };
    const where = `${s.host}:${s.port}`;
    const r = await askOne(s, name, timeoutMs, signal);
    if (typeof r === 'string') failures.push(`${where} ${r}`);
    else if (TRY_NEXT.has(rcodeOf(r))) failures.push(`${where} answered ${rcodeOf(r)}`);
    else return { ok: true, packet: r, server: where };
  }
  return { ok: false, reason: `no upstream DNS server answered: ${failures.join('; ')}` };
}

/** The rcode dns-packet decodes (missing from its types). */
export function rcodeOf(p: DecodedPacket): string {
  return (p as DecodedPacket & { rcode?: string }).rcode ?? 'NOERROR';
}

/**
 * One query on its own socket: a fresh random source port and id for each, and
 * a reply counts only if it answers this very question, so an off-path spoofer
 * must guess both (the guest's own id is never sent upstream).
 */
function askOne(server: Upstream, name: string, timeoutMs: number, signal: AbortSignal): Promise<DecodedPacket | string> {
  const id = randomInt(65536);
  const query = packet.encode({
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type: 'A', class: 'IN', name }],
    additionals: [
      { type: 'OPT', name: '.', udpPayloadSize: EDNS_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] },
    ],
  });
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    let settled = false;
    const done = (r: DecodedPacket | string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.close();
      resolve(r);
    };
    const onAbort = () => done('was not asked: the resolver was closed');
    const timer = setTimeout(() => done(`did not answer within ${timeoutMs} ms`), timeoutMs);
    signal.addEventListener('abort', onAbort);
    socket.on('error', (err) => done(`failed: ${err.message}`));
    socket.on('message', (msg) => {
      const p = decodeReply(msg, id, name);
      if (p) done(p);
    });
    socket.connect(server.port, server.host, () => socket.send(query));
  });
}

function decodeReply(msg: Buffer, id: number, name: string): DecodedPacket | undefined {
  try {
    const p = packet.decode(msg);
    const q = p.questions?.[0];
    if (p.id !== id || !p.flag_qr || p.questions?.length !== 1 || q?.type !== 'A' || normalizeName(q.name) !== name) return undefined;
    return p;
  } catch {
    return undefined; // not a DNS message: keep waiting for the real reply until the timeout
  }
}
