import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { AgentClient, GuestDestination, GuestNetworkHandler } from '../guest/client.js';
import type { GuestConnection } from '../guest/connection.js';
import type { BoundPort, NetworkPolicy, NetworkStats, PublishedPort } from '../spec/network.js';
import { DnsResolver } from './dns.js';
import { carry, type EgressContext, type OpenConnection } from './egress.js';
import { LoopbackMap } from './loopback-map.js';
import { NameRecord } from './names.js';
import { type CompiledPolicy, compilePolicy } from './policy.js';
import { PublishedPorts } from './ports.js';
import { Bandwidth, type ByteCounts } from './relay.js';
import type { SandboxSecrets } from './secret-state.js';

/** Open connections a sandbox may hold when its policy names no maximum: a guest is not trusted to be modest. */
const DEFAULT_MAX_CONNECTIONS = 4096;

/** A closed network: what a sandbox without a `network` spec has. */
export const CLOSED: NetworkPolicy = { enabled: false, defaultAction: 'deny', allow: [], deny: [] };

/**
 * One sandbox's network service on the host: it answers the guest's DNS, decides
 * each of its TCP connections by the policy and dials the allowed ones itself,
 * and listens on its published ports. Every decision becomes a `network` log line.
 */
export class SandboxNetwork implements GuestNetworkHandler {
  private policy: NetworkPolicy;
  private compiled: CompiledPolicy;
  private readonly names = new NameRecord();
  private readonly loopback = new LoopbackMap();
  private resolver: DnsResolver;
  private readonly bandwidth = new Bandwidth();
  private readonly open = new Set<OpenConnection>();
  private readonly counts = { connections: 0, refused: 0, dnsQueries: 0 };
  private readonly published: PublishedPorts;
  private agent?: AgentClient;

  private readonly secrets?: EgressContext['secrets'];

  constructor(
    policy: NetworkPolicy | undefined,
    private readonly log: (line: string) => void,
    secrets?: SandboxSecrets,
  ) {
    // Upstreams of intercepted connections are checked against the system's CAs, plus these (a corporate CA).
    const extra = process.env.VMBOX_EXTRA_CA_CERTS;
    if (secrets)
      this.secrets = { ...secrets, upstreamCa: extra ? [...rootCertificates, readFileSync(extra, 'utf8')].join('\n') : undefined };
    this.policy = policy ?? CLOSED;
    this.compiled = compilePolicy(this.policy);
    this.bandwidth.setCaps(this.policy);
    this.resolver = new DnsResolver({ policy: this.compiled, names: this.names, servers: this.policy.dnsServers });
    this.published = new PublishedPorts(
      (port) => this.requireAgent().connectPort(port),
      this.bandwidth,
      (port, bytes, error) =>
        this.log(
          `inbound ${port.hostIp}:${port.hostPort} → guest port ${port.guestPort}: ${error ? `failed: ${error}` : 'closed'}${describeBytes(bytes)}`,
        ),
    );
  }

  /** Connects the service to a (new) agent: a booted, restored or re-adopted guest. */
  async attach(agent: AgentClient, ports: PublishedPort[] = []): Promise<BoundPort[]> {
    this.agent = agent;
    if (this.policy.enabled) this.enable(agent);
    const bound: BoundPort[] = [];
    try {
      for (const p of ports) bound.push(await this.published.add(p));
    } catch (err) {
      this.published.close();
      throw err;
    }
    return bound;
  }

  /**
   * Not awaited: the agent handles requests in order, so whatever is asked after
   * this (the first command) finds the network up, and a create does not wait a
   * round trip for it. A failure is logged (a guest kernel without netfilter).
   */
  private enable(agent: AgentClient): void {
    agent.network = this;
    agent.netUp().catch((err: Error) => {
      if (!agent.isClosed) this.log(`the guest's network did not come up: ${err.message}`);
    });
  }

  private requireAgent(): AgentClient {
    if (!this.agent || this.agent.isClosed) throw new Error('the sandbox is not running');
    return this.agent;
  }

  connection(conn: GuestConnection, guestTo: GuestDestination): void {
    this.counts.connections++;
    const to = { address: this.loopback.hostFor(guestTo.address), port: guestTo.port };
    const names = this.names.namesFor(to.address);
    const decision = this.compiled.decideConnect({ ip: to.address, port: to.port, names });
    const full = this.open.size >= (this.policy.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    const refusal = !this.policy.enabled
      ? 'the sandbox has no network'
      : full
        ? `${this.open.size} connections are open, the most the policy allows (maxConnections)`
        : decision.allowed
          ? undefined
          : decision.reason;
    if (refusal) {
      this.counts.refused++;
      this.log(`refused ${describeDest(to, names[0])}: ${refusal}`);
      conn.destroy();
      return;
    }
    carry(
      {
        policy: () => this.compiled,
        bandwidth: this.bandwidth,
        secrets: this.secrets,
        report: (r) => {
          if (!r.allowed) this.counts.refused++;
          this.log(`${r.allowed ? 'allowed' : 'refused'} ${describeDest(r, r.name)}: ${r.reason}${describeBytes(r.bytes)}`);
        },
      },
      conn,
      to,
      names,
      decision,
      this.open,
    );
  }

  async dns(query: Buffer): Promise<Buffer | undefined> {
    this.counts.dnsQueries++;
    const { response, decision } = await this.resolver.answer(query);
    if (decision && !decision.allowed) {
      this.counts.refused++;
      this.log(`dns ${decision.name ?? '?'}: refused: ${decision.reason}`);
    } else if (decision?.name) {
      this.log(`dns ${decision.name}: ${decision.reason}`);
    }
    return response && this.loopback.rewrite(response);
  }

  /** A new policy for the running sandbox; open connections it no longer allows are closed. */
  async update(policy: NetworkPolicy): Promise<void> {
    const compiled = compilePolicy(policy);
    const wasEnabled = this.policy.enabled;
    if (String(policy.dnsServers) === String(this.policy.dnsServers)) this.resolver.policy = compiled;
    else {
      this.resolver.close();
      this.resolver = new DnsResolver({ policy: compiled, names: this.names, servers: policy.dnsServers });
    }
    this.policy = policy;
    this.compiled = compiled;
    this.bandwidth.setCaps(policy);
    if (policy.enabled && !wasEnabled && this.agent) this.enable(this.agent);
    for (const c of [...this.open]) {
      const d = compiled.decideConnect({ ip: c.address, port: c.port, names: c.names });
      const byName =
        d.allowed && c.serverName !== undefined
          ? compiled.decideServerName({ ip: c.address, port: c.port, names: c.names, serverName: c.serverName })
          : d;
      if (!policy.enabled || !byName.allowed) c.close();
    }
  }

  addPort(p: PublishedPort): Promise<BoundPort> {
    return this.published.add(p);
  }

  removePort(hostPort: number, hostIp?: string): BoundPort {
    return this.published.remove(hostPort, hostIp);
  }

  ports(): BoundPort[] {
    return this.published.list();
  }

  stats(): NetworkStats {
    return { ...this.counts, open: this.open.size, bytesOut: this.bandwidth.totals.out, bytesIn: this.bandwidth.totals.in };
  }

  /** Closes listeners and connections; the guest keeps its (now dead-end) route. */
  close(): void {
    this.published.close();
    this.resolver.close();
    for (const c of [...this.open]) c.close();
    if (this.agent?.network === this) this.agent.network = undefined;
    this.agent = undefined;
  }
}

function describeDest(to: { address: string; port: number }, name?: string): string {
  return name ? `${name} (${to.address}):${to.port}` : `${to.address}:${to.port}`;
}

function describeBytes(b?: ByteCounts): string {
  return b ? `; ${b.out} B out, ${b.in} B in` : '';
}
