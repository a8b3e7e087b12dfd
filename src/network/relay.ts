import type { Duplex } from 'node:stream';

/** Bytes moved by one connection: `in` towards the guest, `out` from it. */
export interface ByteCounts {
  in: number;
  out: number;
}

/**
 * A sandbox's bandwidth caps, shared by all its connections, and its running
 * byte totals (the network metrics).
 */
export class Bandwidth {
  readonly totals: ByteCounts = { in: 0, out: 0 };
  ingress?: TokenBucket;
  egress?: TokenBucket;

  setCaps(caps: { ingressBytesPerSec?: number; egressBytesPerSec?: number }): void {
    this.ingress = caps.ingressBytesPerSec ? new TokenBucket(caps.ingressBytesPerSec) : undefined;
    this.egress = caps.egressBytesPerSec ? new TokenBucket(caps.egressBytesPerSec) : undefined;
  }
}

/** A token bucket holding one second of the rate: `take` says how long to wait before sending more. */
export class TokenBucket {
  private tokens: number;
  private at = Date.now();

  constructor(private readonly rate: number) {
    this.tokens = rate;
  }

  take(n: number): number {
    const now = Date.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.rate) * 1000);
  }
}

/**
 * Relays an outside stream (a host socket) and a guest connection both ways with
 * half-close and backpressure, under the sandbox's caps. An error or an abrupt
 * close on either side resets the other; `done` runs once, with the byte counts.
 * With a `gate`, the guest's bytes wait for it: it resolves with what was read
 * of them meanwhile (the bytes a policy looked at), or rejects to refuse them.
 */
export function relay(
  outside: Duplex,
  guest: Duplex,
  bandwidth: Bandwidth,
  done: (bytes: ByteCounts, error?: string) => void,
  gate?: Promise<Buffer>,
): { close(): void } {
  const bytes: ByteCounts = { in: 0, out: 0 };
  let ended = 0;
  let finished = false;
  const finish = (err?: Error) => {
    if (finished) return;
    finished = true;
    if (err || ended < 2) {
      destroyHard(outside);
      guest.destroy();
    }
    done(bytes, err?.message);
  };
  const count = (dir: keyof ByteCounts) => (n: number) => {
    bytes[dir] += n;
    bandwidth.totals[dir] += n;
  };
  forward(outside, guest, () => bandwidth.ingress, count('in'));
  const open = (first: Buffer) => {
    if (finished) return;
    if (first.length) {
      count('out')(first.length);
      outside.write(first);
    }
    if (guest.readableEnded)
      outside.end(); // the guest half-closed while the gate held it
    else forward(guest, outside, () => bandwidth.egress, count('out'));
  };
  if (gate) gate.then(open, finish);
  else open(Buffer.alloc(0));
  const halfDone = () => {
    if (++ended === 2) finish();
  };
  for (const s of [outside, guest]) {
    s.once('end', halfDone);
    s.once('error', finish);
    s.once('close', () => finish());
  }
  outside.resume(); // a published port's socket is accepted paused, until its guest side exists
  return { close: () => finish(new Error('closed by the network policy')) };
}

function forward(src: Duplex, dst: Duplex, bucket: () => TokenBucket | undefined, count: (n: number) => void): void {
  src.on('data', (b: Buffer) => {
    count(b.length);
    const ok = dst.write(b);
    const wait = bucket()?.take(b.length) ?? 0;
    if (ok && wait === 0) return;
    src.pause();
    let pending = (ok ? 0 : 1) + (wait > 0 ? 1 : 0);
    const go = () => {
      if (--pending === 0) src.resume();
    };
    if (!ok) dst.once('drain', go);
    if (wait > 0) setTimeout(go, wait).unref();
  });
  src.once('end', () => dst.end());
}

function destroyHard(s: Duplex): void {
  if (s.destroyed) return;
  const sock = s as Duplex & { resetAndDestroy?: () => void };
  if (typeof sock.resetAndDestroy === 'function' && 'remoteAddress' in sock) sock.resetAndDestroy();
  else s.destroy();
}
