import { formatMs } from '../util/duration.js';
import type { SandboxManager } from './manager.js';

const POLICY_TICK_MS = 250;

/** Lifecycle policies (maximum duration, idle timeout), checked on a clock; each stop says why in the sandbox's log. */
export class PolicyClock {
  private timer?: NodeJS.Timeout;
  /** Sandboxes a policy is pausing now: the clock ticks faster than a pause takes. */
  private readonly pausing = new Set<string>();

  constructor(private readonly m: SandboxManager) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), POLICY_TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const now = Date.now();
    for (const [id, live] of this.m.liveSandboxes()) {
      const rec = this.m.db.get(id);
      if (!rec || rec.state !== 'running') continue;
      const { maxDurationMs, idleTimeoutMs } = rec.spec;
      let reason: string | undefined;
      let pause = false;
      if (maxDurationMs && rec.startedAt && now - rec.startedAt >= maxDurationMs) {
        reason = `policy: reached its maximum duration of ${formatMs(maxDurationMs)}`;
        pause = rec.spec.onTimeout === 'pause';
      } else if (idleTimeoutMs && live.activeExecs === 0 && now - live.lastActivity >= idleTimeoutMs) {
        reason = `policy: idle for ${formatMs(idleTimeoutMs)}`;
        pause = rec.spec.onIdle === 'pause';
      }
      if (reason && pause) {
        // Paused, it holds no memory and no CPU; the next connect resumes it where it was.
        if (live.stopReason !== undefined || this.pausing.has(id)) continue;
        this.pausing.add(id);
        this.m.system(id, `${reason}: pausing`);
        this.m
          .pause(id, { reason })
          .catch((err) => {
            // One that cannot pause (host directories mounted) stops: the policy's end is kept, not its kind.
            this.m.system(id, `policy pause failed, stopping instead: ${(err as Error).message}`);
            return this.m.stop(id, { reason }).catch(() => {});
          })
          .finally(() => this.pausing.delete(id));
        continue;
      }
      if (reason) {
        this.m.system(id, reason);
        this.m.stop(id, { reason }).catch((err) => this.m.system(id, `policy stop failed: ${(err as Error).message}`));
      }
    }
  }
}
