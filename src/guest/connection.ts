import { Duplex } from 'node:stream';
import { VmboxError } from '../errors.js';
import type { Channel } from './channel.js';
import { Kind } from './frame.js';

/**
 * A TCP connection inside the guest, relayed by the agent over one channel, as a
 * Node stream: writes wait for the agent's credit, reads hand credit back only as
 * the consumer takes the bytes, so neither side buffers more than a window.
 * end() is a half-close (the guest socket gets FIN); destroy() resets it.
 */
export class GuestConnection extends Duplex {
  private resumeReader?: () => void;

  constructor(private readonly ch: Channel) {
    super({ allowHalfOpen: true });
    ch.onData = (_kind, data) => {
      if (this.push(data)) return;
      return new Promise<void>((r) => {
        this.resumeReader = r;
      });
    };
    ch.onEof = () => this.push(null);
    ch.done.then(
      () => {
        // DONE follows both ends; a reader still waiting gets its end now.
        if (!this.readableEnded) this.push(null);
      },
      (err: Error) => this.destroy(err),
    );
  }

  get channel(): number {
    return this.ch.id;
  }

  override _read(): void {
    const r = this.resumeReader;
    this.resumeReader = undefined;
    r?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.ch.write(Kind.data, chunk).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.ch.sendFrame(Kind.eof);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Both ends closed cleanly: the agent flushes what it holds and ends the channel itself (DONE).
    const clean = !err && this.readableEnded && this.writableFinished;
    if (!clean && !this.ch.isClosed) this.ch.abort(err ?? new VmboxError('aborted', 'the connection was closed'));
    this.resumeReader?.();
    cb(err);
  }
}
