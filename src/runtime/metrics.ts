import type { SandboxNetwork } from '../network/service.js';
import type { MetricsSample } from '../spec/sandboxes.js';
import type { Machine } from './machine.js';

const HISTORY = 120;

/** Samples a running sandbox every `intervalMs` (0: only on demand) and keeps the last few minutes. */
export class MetricsSampler {
  private readonly samples: MetricsSample[] = [];
  private timer?: NodeJS.Timeout;
  private last?: { t: number; cpuMs: number };
  private inFlight?: Promise<MetricsSample>;

  constructor(
    private readonly machine: Machine,
    private readonly network: SandboxNetwork,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs <= 0) return;
    this.timer = setInterval(() => this.sample().catch(() => {}), this.intervalMs);
    this.timer.unref();
    this.sample().catch(() => {});
  }

  stop(): void {
    clearInterval(this.timer);
  }

  history(): MetricsSample[] {
    return [...this.samples];
  }

  /** Takes a sample now (one at a time: a slow guest does not pile up requests). */
  sample(): Promise<MetricsSample> {
    this.inFlight ??= this.take().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async take(): Promise<MetricsSample> {
    const [host, guest] = await Promise.all([this.machine.vm.metrics(), this.machine.agent.stats()]);
    const t = Date.now();
    const cpuPercent = this.last && t > this.last.t ? Math.max(0, ((host.cpuMs - this.last.cpuMs) / (t - this.last.t)) * 100) : 0;
    this.last = { t, cpuMs: host.cpuMs };
    const s: MetricsSample = { t, cpuPercent, hostRssBytes: host.rssBytes, ...guest, network: this.network.stats() };
    this.samples.push(s);
    if (this.samples.length > HISTORY) this.samples.shift();
    return s;
  }
}
