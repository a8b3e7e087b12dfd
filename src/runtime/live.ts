import type { SandboxNetwork } from '../network/service.js';
import type { Machine } from './machine.js';
import { MetricsSampler } from './metrics.js';

/**
 * Everything a running sandbox holds besides its database row: its VM and
 * agent, its metrics sampler, its activity, its network service and published
 * ports. Made in one place and torn down in one place.
 */
export class LiveSandbox {
  readonly sampler: MetricsSampler;
  lastActivity = Date.now();
  activeExecs = 0;
  /** Why the runtime is stopping it, told to the commands it cuts short. */
  stopReason?: string;

  constructor(
    readonly machine: Machine,
    readonly network: SandboxNetwork,
    metricsIntervalMs: number,
  ) {
    this.sampler = new MetricsSampler(machine, network, metricsIntervalMs);
    this.sampler.start();
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  /** Lets go of the VM without stopping it (the server is closing; the next one adopts it). */
  release(): void {
    this.sampler.stop();
    this.network.close();
    this.machine.agent.close();
  }

  /** Saves the VM to `statePath` and ends it, with everything attached to it (a pause). */
  async save(statePath: string, reason: string): Promise<void> {
    this.stopReason = reason;
    this.sampler.stop();
    this.network.close();
    await this.machine.save(statePath);
  }

  /** Stops the VM and everything attached to it. */
  async shutdown(opts: { graceful?: boolean; timeoutMs?: number; reason?: string }): Promise<void> {
    this.stopReason = opts.reason;
    this.sampler.stop();
    this.network.close();
    await this.machine.stop(opts);
  }
}
