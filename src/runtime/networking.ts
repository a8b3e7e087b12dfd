import { SpecError } from '../errors.js';
import { compilePolicy } from '../network/policy.js';
import { GUEST_BUNDLE_PATH, GUEST_CA_PATH, loadSecrets, prepareSecrets, type SandboxSecrets } from '../network/secret-state.js';
import { SecretSet } from '../network/secrets.js';
import { SandboxNetwork } from '../network/service.js';
import type { BoundPort, NetworkPolicy, NetworkStats, PublishedPort } from '../spec/network.js';
import { type SandboxSpec, validateSpec } from '../spec/sandbox.js';
import type { Machine } from './machine.js';
import type { SandboxManager } from './manager.js';
import type { SandboxRecord } from './state.js';

/**
 * Network policies and published ports, as the API sees them: each change is
 * checked like a create's spec, recorded in the sandbox's spec (so a restart or
 * a server restart keeps it) and applied to the running sandbox at once.
 */
export class SandboxNetworking {
  constructor(private readonly m: SandboxManager) {}

  /** Refuses a spec whose rules do not parse, naming the rule. */
  check(spec: SandboxSpec): void {
    if (spec.network) compilePolicy(spec.network);
    if (spec.secrets?.length) {
      SecretSet.create(spec.secrets);
      if (!spec.network?.enabled) {
        throw new SpecError('secrets', 'need a network: allow the secrets’ hosts, e.g. --allow api.example.com');
      }
    }
  }

  /** A new sandbox's secrets: placeholders and CA made and saved; the spec gets their environment. */
  async prepare(spec: SandboxSpec, dir: string): Promise<SandboxSpec> {
    if (!spec.secrets?.length) return spec;
    return { ...spec, env: { ...spec.env, ...(await prepareSecrets(dir, spec.secrets)) } };
  }

  /**
   * The network service of a VM that just booted or was adopted. Strict (a
   * create): a published port that cannot be bound fails it. Lenient (a server
   * restart): the sandbox keeps running and the log says which port is missing.
   */
  async attach(rec: SandboxRecord, machine: Machine, opts: { lenient?: boolean } = {}): Promise<SandboxNetwork> {
    const log = this.m.log(rec.id);
    const secrets = rec.spec.secrets?.length ? await loadSecrets(this.m.dir(rec.id), rec.spec.secrets) : undefined;
    if (secrets) await installCa(machine, secrets);
    const network = new SandboxNetwork(rec.spec.network, (line) => log.append('network', line), secrets);
    const ports = rec.spec.ports ?? [];
    const bound = await network.attach(machine.agent, opts.lenient ? [] : ports);
    // Ports asked as 0 are recorded as bound, so clients (getHost) and a restart see the real one.
    if (!opts.lenient && ports.some((p) => p.hostPort === 0)) {
      rec.spec = { ...rec.spec, ports: bound.map((b) => ({ ...b })) };
      this.m.db.update(rec.id, { spec: rec.spec });
    }
    if (opts.lenient) {
      for (const p of ports) {
        try {
          bound.push(await network.addPort(p));
        } catch (err) {
          this.m.system(rec.id, `published port ${p.hostIp}:${p.hostPort} is not back: ${(err as Error).message}`);
        }
      }
    }
    if (rec.spec.network?.enabled) this.m.system(rec.id, `network on: ${describePolicy(rec.spec.network)}`);
    for (const b of bound) this.m.system(rec.id, `published ${b.hostIp}:${b.hostPort} → guest port ${b.guestPort}`);
    return network;
  }

  /** Replaces a sandbox's policy; connections the new one refuses are closed. */
  async update(ref: string, input: unknown): Promise<NetworkPolicy> {
    const rec = this.m.find(ref);
    const spec = validateSpec({ ...rec.spec, network: input });
    this.check(spec);
    const policy = spec.network as NetworkPolicy;
    await this.m.liveOf(rec.id)?.network.update(policy);
    this.m.db.update(rec.id, { spec: { ...rec.spec, network: policy } });
    this.m.system(rec.id, `network policy changed: ${describePolicy(policy)}`);
    return policy;
  }

  async addPort(ref: string, input: unknown): Promise<BoundPort> {
    const rec = this.m.find(ref);
    const { running } = this.runningOf(rec);
    const spec = validateSpec({ ...rec.spec, ports: [...(rec.spec.ports ?? []), input] });
    const wanted = spec.ports?.at(-1) as PublishedPort;
    const bound = await running.addPort(wanted);
    // The port actually bound is kept, so a restart asks for the same one.
    this.m.db.update(rec.id, { spec: { ...rec.spec, ports: [...(rec.spec.ports ?? []), { ...wanted, hostPort: bound.hostPort }] } });
    this.m.system(rec.id, `published ${bound.hostIp}:${bound.hostPort} → guest port ${bound.guestPort}`);
    return bound;
  }

  removePort(ref: string, hostPort: number, hostIp = '127.0.0.1'): BoundPort {
    const rec = this.m.find(ref);
    const { running } = this.runningOf(rec);
    const removed = running.removePort(hostPort, hostIp);
    const ports = (rec.spec.ports ?? []).filter((p) => !(p.hostPort === hostPort && (p.hostIp ?? '127.0.0.1') === hostIp));
    this.m.db.update(rec.id, { spec: { ...rec.spec, ports } });
    this.m.system(rec.id, `unpublished ${hostIp}:${hostPort}`);
    return removed;
  }

  stats(ref: string): NetworkStats {
    return this.runningOf(this.m.find(ref)).running.stats();
  }

  ports(ref: string): BoundPort[] {
    return this.runningOf(this.m.find(ref)).running.ports();
  }

  private runningOf(rec: SandboxRecord): { running: SandboxNetwork } {
    return { running: this.m.running(rec.id).live.network };
  }
}

/**
 * Puts the sandbox's CA where TLS clients look: its own file, and appended to the
 * image's bundle (made when the image has none). Done at every boot, once.
 */
async function installCa(machine: Machine, secrets: SandboxSecrets): Promise<void> {
  const pem = secrets.ca.certificatePem;
  const agent = machine.agent;
  await agent.writeFile(GUEST_CA_PATH, pem, { mode: 0o644, mkdirs: true });
  let bundle = '';
  try {
    for await (const chunk of agent.readFile(GUEST_BUNDLE_PATH)) bundle += chunk.toString('utf8');
  } catch {}
  if (!bundle.includes(pem.trim())) {
    await agent.writeFile(GUEST_BUNDLE_PATH, `${bundle && !bundle.endsWith('\n') ? '\n' : ''}${pem}`, {
      append: true,
      mkdirs: true,
      mode: 0o644,
    });
  }
}

function describePolicy(p: NetworkPolicy): string {
  if (!p.enabled) return 'off';
  const parts = [`default ${p.defaultAction}`];
  if (p.allow.length) parts.push(`allow ${p.allow.join(', ')}`);
  if (p.deny.length) parts.push(`deny ${p.deny.join(', ')}`);
  return parts.join('; ');
}
