import packet, { type Answer, type DecodedPacket, type StringAnswer } from 'dns-packet';
import { SpecError } from '../errors.js';
import type { NetworkDecision } from '../spec/network.js';
import { HOST_ALIAS_ADDRESS, isPrivate } from './addresses.js';
import { askUpstream, hostNameservers, parseUpstream, rcodeOf, type Upstream } from './dns-upstream.js';
import type { NameRecord } from './names.js';
import type { CompiledPolicy, NameDecision } from './policy.js';
import { normalizeName } from './rules.js';

/**
 * A sandbox's DNS: the guest's raw UDP queries, answered on the host under the
 * sandbox's policy. Choices, each for a reason:
 * - A refused name gets NXDOMAIN, so a program fails fast with "name not known"
 *   rather than retrying a server failure; it is never asked upstream.
 * - Only A questions go upstream. Every other type (AAAA: the guest has no IPv6;
 *   HTTPS, SVCB, MX, TXT, SRV, PTR…) of a name the guest may resolve gets an empty
 *   NOERROR, which makes resolvers and browsers fall back to A.
 * - From an upstream answer the guest gets only the CNAME chain of its name and
 *   its A records, never the authority or additional sections.
 * - DNS rebinding: an A record in host-private space is dropped unless a rule
 *   names the domain; when that drops them all the answer is NXDOMAIN.
 * - A truncated upstream answer is passed on with the A records it holds (any
 *   subset of the records is a correct answer) and no TC bit: the guest's
 *   queries arrive as UDP messages and a retry over TCP has nowhere to go.
 *   Upstream queries carry EDNS0 at 1232 bytes, so truncation is rare anyway.
 * - Answers to the guest stay within 512 bytes (no EDNS towards the guest),
 *   dropping A records past it.
 * - A malformed query gets FORMERR when its header can be read, else no answer.
 */

export interface DnsDecision extends NetworkDecision {
  kind: 'dns';
  /** The question's type (`A`, `AAAA`…), when the query could be read. */
  type?: string;
  /** The answer's rcode, `none` when no answer was sent. */
  rcode: string;
  /** The A records the guest was given. */
  addresses: string[];
}

export interface DnsAnswer {
  /** Undefined when the query is not worth an answer (no readable header, or a response sent as a query). */
  response: Buffer | undefined;
  decision: DnsDecision;
}

export interface DnsResolverOptions {
  policy: CompiledPolicy;
  names: NameRecord;
  /** Upstream servers, `IPv4[:port]` (the policy's `dnsServers`); default: this host's /etc/resolv.conf. */
  servers?: readonly string[];
  /** How long each upstream server gets before the next is asked (default 2000). */
  timeoutMs?: number;
  /** Upstream queries at once for this sandbox (default 64); past it the guest gets SERVFAIL and retries. */
  maxInFlight?: number;
}

type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';
const RCODE: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };
const HEADER = 12;
const MAX_ANSWER = 512;
const MAX_CHAIN = 8;
const ALIAS_TTL = 60;
const LABEL = /^[a-z0-9_-]{1,63}$/;

/** Letters, digits, `-` and `_` (service labels) only: what the policy reads must be what goes upstream. */
function isHostName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => LABEL.test(l));
}

export class DnsResolver {
  /** Replace to apply a changed policy; queries already upstream finish under the old one. */
  policy: CompiledPolicy;
  private readonly names: NameRecord;
  private readonly servers: Upstream[];
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private readonly closer = new AbortController();

  constructor(opts: DnsResolverOptions) {
    this.policy = opts.policy;
    this.names = opts.names;
    this.servers = opts.servers ? opts.servers.map((s, i) => parseUpstream(s, `network.dnsServers[${i}]`)) : hostNameservers();
    if (this.servers.length === 0) {
      throw new SpecError('network.dnsServers', "this host's /etc/resolv.conf names no IPv4 nameserver; give the sandbox DNS servers");
    }
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.maxInFlight = opts.maxInFlight ?? 64;
  }

  /** The answer to one guest query. Never throws: whatever goes wrong becomes an rcode and a reason. */
  async answer(query: Buffer): Promise<DnsAnswer> {
    try {
      return await this.decide(query);
    } catch (err) {
      const reason = `internal error: ${(err as Error).message}`;
      return query.length < HEADER ? this.drop(reason) : this.reply(query, undefined, 'SERVFAIL', false, reason);
    }
  }

  /** Stops: upstream queries under way end, and later ones, in SERVFAIL. */
  close(): void {
    this.closer.abort();
  }

  private async decide(query: Buffer): Promise<DnsAnswer> {
    if (query.length < HEADER) return this.drop(`malformed DNS query: ${query.length} bytes, shorter than a header`);
    let q: DecodedPacket;
    try {
      q = packet.decode(query);
    } catch (err) {
      return this.reply(query, undefined, 'FORMERR', false, `malformed DNS query: ${(err as Error).message}`);
    }
    // Answering a response could set two resolvers answering each other forever.
    if (q.flag_qr) return this.drop('a DNS response arrived as a query; not answered');
    const opcode = (q as DecodedPacket & { opcode?: string }).opcode;
    if (opcode !== 'QUERY') return this.reply(query, q, 'NOTIMP', false, `DNS opcode ${opcode} is not served`);
    // Like BIND and Unbound: no resolver sends several questions in one query.
    const question = q.questions?.length === 1 ? q.questions[0] : undefined;
    if (!question) return this.reply(query, q, 'FORMERR', false, `a query must carry one question, not ${q.questions?.length ?? 0}`);
    const name = normalizeName(question.name);
    const what = { name, type: question.type };
    if (question.class !== 'IN') return this.reply(query, q, 'REFUSED', false, `class ${question.class} is not served`, what);
    if (!isHostName(name)) return this.reply(query, q, 'NXDOMAIN', false, `${name} is not a host name`, what);

    const d = this.policy.decideName(name);
    if (d.action === 'refuse') return this.reply(query, q, 'NXDOMAIN', false, d.reason, what);
    if (question.type !== 'A') {
      const why = question.type === 'AAAA' ? 'the guest has no IPv6' : 'the guest is given A records only';
      return this.reply(query, q, 'NOERROR', true, `${d.reason}; ${question.type} answered empty: ${why}`, what);
    }
    if (d.by === 'alias') {
      const alias: StringAnswer = { type: 'A', name: question.name, ttl: ALIAS_TTL, data: HOST_ALIAS_ADDRESS };
      return this.reply(query, q, 'NOERROR', true, d.reason, what, [alias]);
    }
    return this.forward(query, q, name, d);
  }

  private async forward(query: Buffer, q: DecodedPacket, name: string, d: NameDecision): Promise<DnsAnswer> {
    const what = { name, type: 'A' };
    if (this.inFlight >= this.maxInFlight) {
      return this.reply(query, q, 'SERVFAIL', true, `${this.maxInFlight} DNS queries of this sandbox are already upstream`, what);
    }
    this.inFlight++;
    const up = await askUpstream(this.servers, name, this.timeoutMs, this.closer.signal).finally(() => this.inFlight--);
    if (!up.ok) return this.reply(query, q, 'SERVFAIL', true, up.reason, what);
    const rcode = rcodeOf(up.packet);
    if (rcode === 'NXDOMAIN') return this.reply(query, q, 'NXDOMAIN', true, `${up.server} knows no such name`, what);
    if (rcode !== 'NOERROR') return this.reply(query, q, 'SERVFAIL', true, `${up.server} answered ${rcode}`, what);
    return this.filter(query, q, name, d, up.packet.answers ?? []);
  }

  /** The CNAME chain and A records of the upstream answer that the policy lets the guest see. */
  private filter(query: Buffer, q: DecodedPacket, name: string, d: NameDecision, answers: Answer[]): DnsAnswer {
    const what = { name, type: 'A' };
    const chain = [name];
    const cnames: Answer[] = [];
    for (let i = 0; i < MAX_CHAIN; i++) {
      const last = chain[chain.length - 1];
      const c = answers.find((a): a is StringAnswer => a.type === 'CNAME' && normalizeName(a.name) === last);
      const target = c ? normalizeName(c.data) : undefined;
      if (!c || !target || chain.includes(target)) break;
      chain.push(target);
      cnames.push(c);
    }
    for (const alias of chain.slice(1)) {
      const ad = this.policy.decideName(alias);
      if (ad.by === 'deny') return this.reply(query, q, 'NXDOMAIN', false, `${name} is an alias of ${alias}, ${ad.reason}`, what);
    }
    const kept: StringAnswer[] = [];
    const dropped: string[] = [];
    for (const a of answers) {
      if (a.type !== 'A' || !chain.includes(normalizeName(a.name))) continue;
      if (!d.privateOk && isPrivate(a.data)) dropped.push(a.data);
      else kept.push(a);
    }
    if (kept.length === 0 && dropped.length > 0) {
      const reason = `rebinding: ${name} resolved only to host-private addresses (${dropped.join(', ')}) and no rule names it`;
      return this.reply(query, q, 'NXDOMAIN', false, reason, what);
    }
    const fit = [...cnames, ...kept];
    while (kept.length > 1 && packet.encodingLength({ questions: q.questions, answers: fit }) > MAX_ANSWER) {
      kept.pop();
      fit.pop();
    }
    for (const a of kept) this.names.record(a.data, chain);
    const note = dropped.length ? `; dropped host-private ${dropped.join(', ')}` : '';
    return this.reply(query, q, 'NOERROR', true, `${d.reason}${note}`, what, fit);
  }

  private drop(reason: string): DnsAnswer {
    return { response: undefined, decision: decision(false, reason, 'none', {}, []) };
  }

  private reply(
    query: Buffer,
    q: DecodedPacket | undefined,
    rcode: Rcode,
    allowed: boolean,
    reason: string,
    what: { name?: string; type?: string } = {},
    answers: Answer[] = [],
  ): DnsAnswer {
    const addresses = answers.flatMap((a) => (a.type === 'A' ? [a.data] : []));
    return { response: encodeReply(query, q, rcode, answers), decision: decision(allowed, reason, rcode, what, addresses) };
  }
}

function decision(
  allowed: boolean,
  reason: string,
  rcode: string,
  what: { name?: string; type?: string },
  addresses: string[],
): DnsDecision {
  return { at: Date.now(), kind: 'dns', ...what, allowed, reason, rcode, addresses };
}

/** The guest's id, question and RD bit echoed; a bare header when the query could not be decoded. */
function encodeReply(query: Buffer, q: DecodedPacket | undefined, rcode: Rcode, answers: Answer[]): Buffer {
  const flags = (query.readUInt16BE(2) & packet.RECURSION_DESIRED) | packet.RECURSION_AVAILABLE | RCODE[rcode];
  if (q) {
    try {
      return packet.encode({ type: 'response', id: q.id, flags, questions: q.questions, answers });
    } catch {
      // a question dns-packet decoded but cannot encode again: a bare header still carries the rcode
    }
  }
  const header = Buffer.alloc(HEADER);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8000 | flags, 2);
  return header;
}
