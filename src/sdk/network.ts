import type { BoundPort, NetworkPolicy, NetworkPolicyInput } from '../spec/network.js';
import type { CallOptions, Connection } from './connection.js';
import { sandboxPath } from './paths.js';

export type { BoundPort, NetworkPolicy, NetworkPolicyInput };

/** A port to publish: the host listens on hostIp:hostPort (default 127.0.0.1, any free port). */
export interface PortOptions {
  guestPort: number;
  hostPort?: number;
  hostIp?: string;
}

/** A running sandbox's network policy (`sbx.network`). */
export class Network {
  constructor(
    private readonly conn: Connection,
    private readonly id: string,
  ) {}

  get(call: CallOptions = {}): Promise<NetworkPolicy> {
    return this.conn.request('GET', sandboxPath(this.id, '/network'), undefined, call);
  }

  /** Replaces the policy; the sandbox's open connections the new one refuses are closed. */
  update(policy: NetworkPolicyInput, call: CallOptions = {}): Promise<NetworkPolicy> {
    return this.conn.request('PUT', sandboxPath(this.id, '/network'), policy, call);
  }
}

/** A running sandbox's published ports (`sbx.ports`). */
export class Ports {
  constructor(
    private readonly conn: Connection,
    private readonly id: string,
    private readonly onChange: (ports: BoundPort[]) => void,
  ) {}

  async list(call: CallOptions = {}): Promise<BoundPort[]> {
    const ports = await this.conn.request<BoundPort[]>('GET', sandboxPath(this.id, '/ports'), undefined, call);
    this.onChange(ports);
    return ports;
  }

  /** Publishes a guest port; a host port already taken is a PortError with code portInUse. */
  async add(opts: PortOptions, call: CallOptions = {}): Promise<BoundPort> {
    const bound = await this.conn.request<BoundPort>('POST', sandboxPath(this.id, '/ports'), { hostPort: 0, ...opts }, call);
    await this.list().catch(() => {});
    return bound;
  }

  async remove(hostPort: number, opts: { hostIp?: string } & CallOptions = {}): Promise<BoundPort> {
    const { hostIp, ...call } = opts;
    const q = hostIp ? `?hostIp=${encodeURIComponent(hostIp)}` : '';
    const removed = await this.conn.request<BoundPort>('DELETE', sandboxPath(this.id, `/ports/${hostPort}${q}`), undefined, call);
    await this.list().catch(() => {});
    return removed;
  }
}
