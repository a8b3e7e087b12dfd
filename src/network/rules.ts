import { SpecError } from '../errors.js';
import { HOST_ALIAS } from '../spec/network.js';
import { type Cidr, ipv4Problem, parseCidr, prefixMask, withinSpecialRange } from './addresses.js';

/**
 * One `TARGET[:PORTS]` rule of a network policy (spec/network.ts), parsed once
 * when the policy is compiled, and a set of rules indexed so that a lookup costs
 * a few map probes however many rules there are: it runs on every connection.
 */

export type Target =
  | { kind: 'domain'; name: string }
  /** `*.base`: names below `base` at any depth, not `base` itself. */
  | { kind: 'wildcard'; base: string }
  /** `namesSpecial`: the block lies inside one special range, so the rule names host-private space on purpose. */
  | { kind: 'cidr'; cidr: Cidr; namesSpecial: boolean }
  | { kind: 'host' };

export interface Rule {
  /** As written, for reasons and logs. */
  text: string;
  target: Target;
  fromPort: number;
  toPort: number;
}

/** A port, or `any`: the rule covers at least one port; `every`: it covers all of them. */
export type PortQuery = number | 'any' | 'every';

const EXAMPLES = 'a rule looks like pypi.org, *.pythonhosted.org:443, 10.0.0.0/8:5432 or host.vmbox.internal:8000-8999';
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Names compare lower-case, without the trailing dot of a fully qualified name. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

export function parseRule(text: string, field: string): Rule {
  const fail = (what: string): never => {
    throw new SpecError(field, `"${text}" ${what}; ${EXAMPLES}`);
  };
  if (text.includes('[') || text.split(':').length > 2) fail("is an IPv6 address; a sandbox's guest has no IPv6");
  const colon = text.indexOf(':');
  const [fromPort, toPort] = colon < 0 ? [1, 65535] : parsePorts(text.slice(colon + 1), fail);
  const target = parseTarget(colon < 0 ? text : text.slice(0, colon), fail);
  return { text, target, fromPort, toPort };
}

function parsePorts(ports: string, fail: (what: string) => never): [number, number] {
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(ports);
  if (!m) return fail(`has ports "${ports}"; give one port (443) or a range (8000-8999)`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  for (const p of [from, to]) if (p < 1 || p > 65535) fail(`has port ${p}; ports are 1 to 65535`);
  if (from > to) fail(`has the range ${from}-${to}, which runs backwards; write ${to}-${from}`);
  return [from, to];
}

function parseTarget(raw: string, fail: (what: string) => never): Target {
  if (raw === '') return fail('has no target before its port');
  // A target of digits, dots and a slash is an address: a top-level domain is never all digits.
  if (/^[0-9./]+$/.test(raw)) {
    try {
      const cidr = parseCidr(raw);
      return { kind: 'cidr', cidr, namesSpecial: withinSpecialRange(cidr) };
    } catch (err) {
      return fail(`is not a valid IPv4 address or CIDR: ${(err as Error).message}`);
    }
  }
  if (raw.includes('/')) return fail(`has a "/" but ${ipv4Problem(raw.slice(0, raw.indexOf('/')))}`);
  const name = normalizeName(raw);
  if (name === HOST_ALIAS) return { kind: 'host' };
  const wild = name.startsWith('*.');
  const domain = wild ? name.slice(2) : name;
  if (domain.includes('*')) fail('has a "*" that is not a leading "*." (a wildcard covers whole labels: *.example.com)');
  if (domain.length > 253) fail('is longer than the 253 characters a domain may have');
  for (const label of domain.split('.')) {
    if (!LABEL.test(label)) fail(`has the label "${label}"; a domain label is 1-63 letters, digits or inner hyphens`);
  }
  return wild ? { kind: 'wildcard', base: domain } : { kind: 'domain', name: domain };
}

function covers(rule: Rule, port: PortQuery): boolean {
  if (port === 'any') return true;
  if (port === 'every') return rule.fromPort === 1 && rule.toPort === 65535;
  return rule.fromPort <= port && port <= rule.toPort;
}

function push<K>(map: Map<K, Rule[]>, key: K, rule: Rule): void {
  const list = map.get(key);
  if (list) list.push(rule);
  else map.set(key, [rule]);
}

/** Rules of one kind (allow or deny), indexed. A lookup returns the most specific match; among equals, the first written. */
export class RuleSet {
  private readonly exact = new Map<string, Rule[]>();
  private readonly wildcard = new Map<string, Rule[]>();
  /** prefix length → network address → rules; probed from the longest prefix, at most 33 probes. */
  private readonly blocks = new Map<number, Map<number, Rule[]>>();
  private readonly prefixes: number[];
  private readonly host: Rule[] = [];

  constructor(rules: readonly Rule[]) {
    for (const r of rules) {
      const t = r.target;
      if (t.kind === 'domain') push(this.exact, t.name, r);
      else if (t.kind === 'wildcard') push(this.wildcard, t.base, r);
      else if (t.kind === 'host') this.host.push(r);
      else {
        const byBase = this.blocks.get(t.cidr.prefix) ?? new Map<number, Rule[]>();
        this.blocks.set(t.cidr.prefix, byBase);
        push(byBase, t.cidr.base, r);
      }
    }
    this.prefixes = [...this.blocks.keys()].sort((a, b) => b - a);
  }

  /** A domain or wildcard rule over `name` (normalized) that covers `port`; the exact name first, then the nearest parent. */
  matchName(name: string, port: PortQuery): Rule | undefined {
    const hit = this.exact.get(name)?.find((r) => covers(r, port));
    if (hit) return hit;
    for (let dot = name.indexOf('.'); dot >= 0; dot = name.indexOf('.', dot + 1)) {
      const w = this.wildcard.get(name.slice(dot + 1))?.find((r) => covers(r, port));
      if (w) return w;
    }
    return undefined;
  }

  /** The first of `names` that a rule covers, with that rule. */
  matchAnyName(names: readonly string[], port: PortQuery): { name: string; rule: Rule } | undefined {
    for (const name of names) {
      const rule = this.matchName(name, port);
      if (rule) return { name, rule };
    }
    return undefined;
  }

  /** The most specific CIDR rule over `ip` that covers `port` and passes `accept`. */
  matchAddress(ip: number, port: PortQuery, accept?: (rule: Rule) => boolean): Rule | undefined {
    for (const prefix of this.prefixes) {
      const rules = this.blocks.get(prefix)?.get((ip & prefixMask(prefix)) >>> 0);
      const hit = rules?.find((r) => covers(r, port) && (!accept || accept(r)));
      if (hit) return hit;
    }
    return undefined;
  }

  /** A `host.vmbox.internal` rule that covers `port`. */
  matchHost(port: PortQuery): Rule | undefined {
    return this.host.find((r) => covers(r, port));
  }
}
