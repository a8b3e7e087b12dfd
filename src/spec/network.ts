import { type Static, Type } from '@sinclair/typebox';

/**
 * A sandbox's network: closed unless enabled, and then open only as far as its
 * rules say. The host decides every connection and every DNS answer; nothing in
 * the guest can widen it (README "Networking").
 *
 * A rule is `TARGET[:PORTS]`:
 * - TARGET: a domain (`pypi.org`), a wildcard domain (`*.pythonhosted.org`,
 *   which matches subdomains, not the bare name), an IPv4 address or CIDR
 *   (`10.1.2.3`, `10.0.0.0/8`), or `host.vmbox.internal` (this host's loopback);
 * - PORTS: one port or a range (`443`, `8000-8999`); none means every port.
 */
// The rules' grammar is checked where they are compiled (src/network/rules.ts), which says what is wrong with one.
const rule = Type.String({ minLength: 1, maxLength: 300 });

export const HOST_ALIAS = 'host.vmbox.internal';

export const NetworkPolicySchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description:
        'Whether the rules apply (default true once a network is given; false turns it off and keeps the rules). No `network` at all: no network.',
    }),
    defaultAction: Type.Union([Type.Literal('allow'), Type.Literal('deny')], {
      default: 'deny',
      description: 'What happens to a destination no rule matches (default deny). Host-private ranges need a rule either way.',
    }),
    allow: Type.Array(rule, {
      default: [],
      maxItems: 1000,
      description: 'Destinations allowed: domain, *.domain, CIDR, host.vmbox.internal, each with an optional :port or :from-to',
    }),
    deny: Type.Array(rule, { default: [], maxItems: 1000, description: 'Destinations refused; a deny wins over any allow' }),
    dnsServers: Type.Optional(
      Type.Array(Type.String({ pattern: '^[0-9.]+(:[0-9]{1,5})?$' }), {
        minItems: 1,
        maxItems: 8,
        description: "Upstream DNS servers the host asks for this sandbox, IPv4[:port] (default: the host's)",
      }),
    ),
    maxConnections: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100000, description: 'Open TCP connections at once (default 4096)' }),
    ),
    egressBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024, description: 'Cap on bytes per second the guest sends out' })),
    ingressBytesPerSec: Type.Optional(Type.Integer({ minimum: 1024, description: 'Cap on bytes per second the guest receives' })),
  },
  { additionalProperties: false },
);
export type NetworkPolicy = Static<typeof NetworkPolicySchema>;
export type NetworkPolicyInput = Partial<NetworkPolicy>;

export const PublishedPortSchema = Type.Object(
  {
    hostIp: Type.String({ default: '127.0.0.1', pattern: '^[0-9.]+$', description: 'Host address to listen on (default 127.0.0.1)' }),
    hostPort: Type.Integer({ minimum: 0, maximum: 65535, description: 'Host port; 0 picks a free one' }),
    guestPort: Type.Integer({ minimum: 1, maximum: 65535 }),
    protocol: Type.Literal('tcp', { default: 'tcp' }),
  },
  { additionalProperties: false },
);
export type PublishedPort = Static<typeof PublishedPortSchema>;
/** A published port as a caller writes it: the host address and protocol have defaults. */
export type PublishedPortInput = Omit<PublishedPort, 'hostIp' | 'protocol'> & Partial<Pick<PublishedPort, 'hostIp' | 'protocol'>>;

/**
 * A secret the guest never sees: its commands get NAME set to a placeholder, and
 * the host puts the value in place of the placeholder only in requests to `hosts`.
 */
export const SecretSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'The environment variable the guest sees' }),
    value: Type.String({ minLength: 8, maxLength: 8192, description: 'The real value (never written to the guest; hidden in responses)' }),
    hosts: Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
      minItems: 1,
      maxItems: 64,
      description: 'Hosts (or *.domain) whose requests get the value',
    }),
  },
  { additionalProperties: false },
);
export type Secret = Static<typeof SecretSchema>;

/** What a response shows instead of a secret's value. */
export const HIDDEN_VALUE = '(hidden)';

/** A published port as it is bound: hostPort is the real one when 0 was asked. */
export const BoundPortSchema = Type.Object({
  hostIp: Type.String(),
  hostPort: Type.Integer(),
  guestPort: Type.Integer(),
  protocol: Type.Literal('tcp'),
});
export type BoundPort = Static<typeof BoundPortSchema>;

/** What the network of a sandbox has carried so far. */
export const NetworkStatsSchema = Type.Object({
  connections: Type.Integer({ description: 'TCP connections the guest opened, allowed or not' }),
  refused: Type.Integer({ description: 'Connections and DNS names refused by the policy' }),
  open: Type.Integer({ description: 'Connections open now' }),
  bytesOut: Type.Integer({ description: 'Bytes the guest sent out' }),
  bytesIn: Type.Integer({ description: 'Bytes the guest received' }),
  dnsQueries: Type.Integer(),
});
export type NetworkStats = Static<typeof NetworkStatsSchema>;

/** One decision, as the `network` log line records it. */
export interface NetworkDecision {
  at: number;
  kind: 'connect' | 'dns' | 'inbound';
  /** The name the guest used (from DNS, TLS SNI or HTTP Host), if any. */
  name?: string;
  address?: string;
  port?: number;
  allowed: boolean;
  /** Which rule allowed it, or why it was refused. */
  reason: string;
  bytesOut?: number;
  bytesIn?: number;
}
