import { HOST_ALIAS, type NetworkPolicyInput } from '../spec/network.js';
import { HOST_ALIAS_ADDRESS, HOST_LOOPBACK, parseIPv4, specialRange, tryParseIPv4 } from './addresses.js';
import { normalizeName, parseRule, type Rule, RuleSet } from './rules.js';

/**
 * A sandbox's network policy, compiled once, deciding each DNS name and each
 * connection the guest attempts. Deny rules always win. Host-private space
 * (addresses.ts) is reachable only through a rule that names it: a CIDR rule
 * inside a special range, a domain rule, or `host.vmbox.internal`.
 */

export interface NameDecision {
  action: 'resolve' | 'refuse';
  reason: string;
  /** The answer may hold host-private addresses: a rule named this domain, so its owner is trusted with them. */
  privateOk: boolean;
  /** What decided. `alias`: `host.vmbox.internal`, answered locally with HOST_ALIAS_ADDRESS, never upstream. */
  by: 'deny' | 'allow' | 'default' | 'alias';
  rule?: string;
}

export interface ConnectRequest {
  ip: string;
  port: number;
  /** The names this sandbox saw resolve to `ip` (names.ts). */
  names?: readonly string[];
}

export interface ConnectDecision {
  allowed: boolean;
  reason: string;
  /** The rule that decided, as written. */
  rule?: string;
  /** Where to dial when allowed: `ip` itself, or this host's loopback for HOST_ALIAS_ADDRESS. */
  dial?: { host: string; port: number };
  /**
   * The connection is allowed only because a domain rule covers a name resolved to
   * `ip`: an address shared by many names (a CDN) must not carry others, so the
   * proxy reads the SNI/Host (sniff.ts) and asks decideServerName before dialling.
   */
  nameBound: boolean;
}

export interface ServerNameRequest extends ConnectRequest {
  /** The TLS SNI or HTTP Host; undefined when a TLS or HTTP start named no server, or named it ambiguously. */
  serverName: string | undefined;
}

const LOOPBACK = parseIPv4(HOST_LOOPBACK);
const ALIAS = parseIPv4(HOST_ALIAS_ADDRESS);

const refused = (reason: string, rule?: Rule): ConnectDecision => ({ allowed: false, reason, rule: rule?.text, nameBound: false });

export class CompiledPolicy {
  private readonly enabled: boolean;
  private readonly defaultAllow: boolean;
  private readonly allow: RuleSet;
  private readonly deny: RuleSet;

  /** Throws a SpecError naming the first malformed rule (`network.allow[2]`). */
  constructor(policy: NetworkPolicyInput) {
    this.enabled = policy.enabled ?? false;
    this.defaultAllow = policy.defaultAction === 'allow';
    this.allow = new RuleSet((policy.allow ?? []).map((r, i) => parseRule(r, `network.allow[${i}]`)));
    this.deny = new RuleSet((policy.deny ?? []).map((r, i) => parseRule(r, `network.deny[${i}]`)));
  }

  /**
   * Whether the guest may resolve `name`. A refused name is never sent upstream:
   * under a default deny a guest could otherwise carry data out in the queries
   * themselves. Only a deny rule over every port refuses a name (`x:25` still lets
   * x resolve for its other ports); any allow rule over the name, whatever its ports,
   * lets it resolve.
   */
  decideName(rawName: string): NameDecision {
    const name = normalizeName(rawName);
    if (!this.enabled) return { action: 'refuse', reason: "the sandbox's network is not enabled", privateOk: false, by: 'default' };
    const deny =
      name === HOST_ALIAS ? (this.deny.matchHost('every') ?? this.deny.matchName(name, 'every')) : this.deny.matchName(name, 'every');
    if (deny) return { action: 'refuse', reason: `denied by rule ${deny.text}`, privateOk: false, by: 'deny', rule: deny.text };
    if (name === HOST_ALIAS) {
      const rule = this.allow.matchHost('any');
      if (rule) return { action: 'resolve', reason: `allowed by rule ${rule.text}`, privateOk: true, by: 'alias', rule: rule.text };
      return { action: 'refuse', reason: `${HOST_ALIAS} is this host and no rule allows it`, privateOk: false, by: 'alias' };
    }
    const allow = this.allow.matchName(name, 'any');
    if (allow) return { action: 'resolve', reason: `allowed by rule ${allow.text}`, privateOk: true, by: 'allow', rule: allow.text };
    if (this.defaultAllow) return { action: 'resolve', reason: 'allowed by default', privateOk: false, by: 'default' };
    return { action: 'refuse', reason: `no rule allows the name ${name} and the default is deny`, privateOk: false, by: 'default' };
  }

  /** Whether the guest may open a TCP connection to `ip:port`, and where to dial. */
  decideConnect({ ip: text, port, names = [] }: ConnectRequest): ConnectDecision {
    if (!this.enabled) return refused("the sandbox's network is not enabled");
    const ip = tryParseIPv4(text);
    if (ip === undefined) return refused(`${text} is not an IPv4 address (the guest has no IPv6)`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) return refused(`${port} is not a TCP port`);
    if (ip === ALIAS) return this.decideHost(port);

    const denyByAddress = this.deny.matchAddress(ip, port);
    if (denyByAddress) return refused(`denied by rule ${denyByAddress.text}`, denyByAddress);
    const normalized = names.map(normalizeName);
    const denyByName = this.deny.matchAnyName(normalized, port);
    if (denyByName) return refused(`denied by rule ${denyByName.rule.text} (${denyByName.name} resolved to ${text})`, denyByName.rule);

    const dial = { host: text, port };
    const special = specialRange(ip);
    // A CIDR rule over 0.0.0.0/0 or 10.0.0.0/7 spans public space too: it lets private addresses through only when it lies inside one special range.
    const byAddress = this.allow.matchAddress(
      ip,
      port,
      (r) => special === undefined || (r.target.kind === 'cidr' && r.target.namesSpecial),
    );
    if (byAddress) return { allowed: true, reason: `allowed by rule ${byAddress.text}`, rule: byAddress.text, dial, nameBound: false };
    const byName = this.allow.matchAnyName(normalized, port);
    if (byName) {
      const reason = `allowed by rule ${byName.rule.text} (${byName.name} resolved to ${text})`;
      // Under a default allow a public address needs no name, so the SNI/Host need not match one.
      return { allowed: true, reason, rule: byName.rule.text, dial, nameBound: special !== undefined || !this.defaultAllow };
    }
    if (special !== undefined) return refused(`${text} is a host-private address (${special}) and no rule names it`);
    if (this.defaultAllow) return { allowed: true, reason: 'allowed by default', dial, nameBound: false };
    const seen = normalized.length ? ` (resolved from ${normalized.join(', ')})` : '';
    return refused(`no rule allows ${text}:${port}${seen} and the default is deny`);
  }

  /**
   * The connection again, once its first bytes named a server. A deny rule over the
   * name refuses it whatever allowed the address; a name-bound connection must
   * name one of the names resolved to `ip`, itself allowed on this port.
   */
  decideServerName(req: ServerNameRequest): ConnectDecision {
    const decision = this.decideConnect(req);
    if (!decision.allowed) return decision;
    const resolved = (req.names ?? []).map(normalizeName);
    if (req.serverName === undefined) {
      if (!decision.nameBound) return decision;
      return refused(`the connection names no server (TLS SNI or HTTP Host), and ${req.ip} is reachable only as ${resolved.join(', ')}`);
    }
    const name = normalizeName(req.serverName);
    const deny = this.deny.matchName(name, req.port);
    if (deny) return refused(`denied by rule ${deny.text} (SNI/Host ${name})`, deny);
    if (!decision.nameBound) return decision;
    if (!resolved.includes(name))
      return refused(`SNI/Host ${name} does not match the name(s) resolved to ${req.ip} (${resolved.join(', ')})`);
    const allow = this.allow.matchName(name, req.port);
    if (!allow) return refused(`SNI/Host ${name} resolved to ${req.ip} but no rule allows it on port ${req.port}`);
    return { ...decision, reason: `allowed by rule ${allow.text} (SNI/Host ${name})`, rule: allow.text };
  }

  /** The host alias: only a `host.vmbox.internal` rule opens it, and it dials this host's loopback. */
  private decideHost(port: number): ConnectDecision {
    // Deny rules over the alias's name or over either address it stands for all apply: a deny wins.
    const deny =
      this.deny.matchHost(port) ??
      this.deny.matchName(HOST_ALIAS, port) ??
      this.deny.matchAddress(LOOPBACK, port) ??
      this.deny.matchAddress(ALIAS, port);
    if (deny) return refused(`denied by rule ${deny.text}`, deny);
    const allow = this.allow.matchHost(port);
    if (!allow) return refused(`${HOST_ALIAS}:${port} is this host's loopback and no rule allows it (allow ${HOST_ALIAS}:${port})`);
    return {
      allowed: true,
      reason: `allowed by rule ${allow.text}`,
      rule: allow.text,
      dial: { host: HOST_LOOPBACK, port },
      nameBound: false,
    };
  }
}

/** Compiles `policy`'s rules once; throws a SpecError naming the first malformed one. */
export function compilePolicy(policy: NetworkPolicyInput): CompiledPolicy {
  return new CompiledPolicy(policy);
}
