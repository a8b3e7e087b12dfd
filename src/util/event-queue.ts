/**
 * A queue between a producer that pushes and one consumer that iterates. A
 * push past `highWater` waits until the consumer has taken it, so a slow
 * consumer holds the producer back instead of growing the queue; `end()` and
 * `fail()` finish the iteration once what is queued has been taken.
 */
export class EventQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private readonly taken: Array<() => void> = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: { err: unknown } | undefined;

  constructor(private readonly highWater = 64) {}

  /** Items pushed and not yet taken. */
  get size(): number {
    return this.items.length;
  }

  get closed(): boolean {
    return this.ended || this.failure !== undefined;
  }

  push(item: T): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.items.push(item);
    this.poke();
    if (this.items.length <= this.highWater) return Promise.resolve();
    return new Promise<void>((r) => this.taken.push(r));
  }

  end(): void {
    this.ended = true;
    this.poke();
  }

  /** The consumer is gone: drops what is queued and lets every waiting producer go. */
  close(): void {
    this.ended = true;
    this.items.length = 0;
    this.release();
    this.poke();
  }

  fail(err: unknown): void {
    if (this.closed) return;
    this.failure = { err };
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private release(): void {
    for (const r of this.taken.splice(0)) r();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    try {
      for (;;) {
        if (this.items.length) {
          const next = this.items.shift() as T;
          if (this.items.length <= this.highWater) this.release();
          yield next;
          continue;
        }
        if (this.failure) throw this.failure.err;
        if (this.ended) return;
        await new Promise<void>((r) => {
          this.wake = r;
        });
      }
    } finally {
      // The consumer went away: nothing it would take may hold the producer.
      this.ended = true;
      this.items.length = 0;
      this.release();
    }
  }
}
