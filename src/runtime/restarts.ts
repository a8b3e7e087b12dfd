import type { SandboxManager } from './manager.js';

/** Failures counted toward `maxRestarts` are those of the last ten minutes. */
const WINDOW_MS = 10 * 60_000;
const DEFAULT_MAX_RESTARTS = 3;

/**
 * The `restart: on-failure` policy, as Docker's: a sandbox that fails (its VM
 * died, its guest broke the protocol, it did not come back after a server
 * restart) is started again from its disk after a backoff of 1, 2, 4 … s, at
 * most `maxRestarts` times in ten minutes. Each decision is in its log.
 */
export class RestartPolicy {
  private readonly failures = new Map<string, number[]>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly m: SandboxManager) {}

  failed(id: string): void {
    const rec = this.m.db.get(id);
    if (!rec || rec.spec.restart !== 'on-failure' || rec.removing) return;
    const now = Date.now();
    const recent = (this.failures.get(id) ?? []).filter((t) => now - t < WINDOW_MS);
    const max = rec.spec.maxRestarts ?? DEFAULT_MAX_RESTARTS;
    if (recent.length >= max) {
      this.m.system(id, `restart policy: failed ${recent.length + 1} times in 10 minutes, not restarted (maxRestarts ${max})`);
      this.failures.delete(id);
      return;
    }
    recent.push(now);
    this.failures.set(id, recent);
    const delay = Math.min(30_000, 1000 * 2 ** (recent.length - 1));
    this.m.system(id, `restart policy: starting again in ${delay / 1000} s (${recent.length} of ${max})`);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const now = this.m.db.get(id);
      if (now?.state !== 'failed') return; // started, stopped or removed meanwhile
      this.m.start(id).catch((err) => this.m.system(id, `restart policy: the start failed: ${(err as Error).message}`));
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
