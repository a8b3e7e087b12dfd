import { fromAgentError, VmboxError } from '../errors.js';
import { deferred } from '../util/deferred.js';
import { DATA_CHUNK, encodeCredit, encodeFrame, encodeJson, type Frame, Kind, WINDOW } from './frame.js';
import { ProtocolViolation } from './untrusted.js';

/** How a channel hands frames to its owner and writes to the agent. */
export interface ChannelHost {
  send(frame: Buffer): void;
  release(id: number): void;
}

/**
 * One multiplexed conversation with the agent. Tracks both credit windows:
 * what we may still send, and what we have consumed but not yet granted back.
 */
export class Channel {
  private sendCredit = WINDOW;
  private creditWaiters: Array<() => void> = [];
  private owed = 0;
  /** Bytes the agent sent that we have not granted back: it may never have more than a window out. */
  private unacked = 0;
  private closed = false;
  private readonly doneDeferred = deferred<unknown>();
  /** Resolves with the DONE payload; rejects with the agent's error or a transport error. */
  readonly done = this.doneDeferred.promise;
  /** Throw a ProtocolViolation from these for a payload of the wrong shape. */
  onReply?: (payload: unknown) => void;
  checkDone?: (payload: unknown) => unknown;
  onData?: (kind: number, data: Buffer) => void | Promise<void>;
  /** The agent's end of a connection's bytes (a relayed TCP connection's FIN). */
  onEof?: () => void;

  constructor(
    readonly id: number,
    private readonly host: ChannelHost,
  ) {
    this.done.catch(() => {});
  }

  get isClosed(): boolean {
    return this.closed;
  }

  handle(frame: Frame): void {
    switch (frame.kind) {
      case Kind.reply:
        this.onReply?.(parseJson(frame.payload));
        return;
      case Kind.done: {
        const value = parseJson(frame.payload);
        this.finish(undefined, this.checkDone ? this.checkDone(value) : value);
        return;
      }
      case Kind.error: {
        const e = parseJson(frame.payload);
        if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new ProtocolViolation('an error that is not an object');
        this.finish(fromAgentError(e as Record<string, unknown>));
        return;
      }
      case Kind.stdout:
      case Kind.stderr:
      case Kind.data:
        this.deliver(frame.kind, frame.payload);
        return;
      case Kind.eof:
        if (!this.onEof) throw new ProtocolViolation(`an end-of-data on channel ${this.id}, which carries no data to the host`);
        this.onEof();
        return;
      case Kind.credit:
        if (frame.payload.length !== 4) throw new ProtocolViolation(`a credit frame of ${frame.payload.length} bytes`);
        this.sendCredit += frame.payload.readUInt32BE(0);
        // Credit comes back for bytes the agent took: more than a window out is credit nobody sent.
        if (this.sendCredit > WINDOW) throw new ProtocolViolation(`credit past the ${WINDOW}-byte window on channel ${this.id}`);
        for (const w of this.creditWaiters.splice(0)) w();
        return;
      default:
        throw new ProtocolViolation(`a frame of unknown kind ${frame.kind}`);
    }
  }

  private deliver(kind: number, data: Buffer): void {
    const n = data.length;
    this.unacked += n;
    if (this.unacked > WINDOW)
      throw new ProtocolViolation(`${this.unacked} bytes on channel ${this.id} without credit (the window is ${WINDOW})`);
    const result = this.onData?.(kind, data);
    // Credit goes back only once the consumer has taken the bytes: this is the backpressure.
    if (result instanceof Promise)
      result.then(
        () => this.consumed(n),
        (err) => this.fail(err),
      );
    else this.consumed(n);
  }

  private consumed(n: number): void {
    if (this.closed) return;
    this.owed += n;
    if (this.owed >= WINDOW / 4) {
      this.host.send(encodeCredit(this.id, this.owed));
      this.unacked -= this.owed;
      this.owed = 0;
    }
  }

  /** Sends bytes as frames of `kind`, waiting for credit as needed. */
  async write(kind: typeof Kind.stdin | typeof Kind.data, data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) {
      if (this.closed) throw new VmboxError('channelClosed', 'the channel closed before all data was sent');
      if (this.sendCredit <= 0) {
        await new Promise<void>((r) => this.creditWaiters.push(r));
        continue;
      }
      const n = Math.min(DATA_CHUNK, this.sendCredit, data.length - off);
      this.host.send(encodeFrame(kind, this.id, data.subarray(off, off + n)));
      this.sendCredit -= n;
      off += n;
    }
  }

  sendFrame(kind: Kind, payload?: Buffer): void {
    if (!this.closed) this.host.send(encodeFrame(kind, this.id, payload));
  }

  sendJson(kind: Kind, value: unknown): void {
    if (!this.closed) this.host.send(encodeJson(kind, this.id, value));
  }

  /** Abandons the channel: the agent ends what it runs for it. */
  abort(err: Error): void {
    if (this.closed) return;
    this.host.send(encodeJson(Kind.error, this.id, { code: 'aborted', message: err.message }));
    this.finish(err);
  }

  /** Ends the channel from our side (transport closed, malformed frame). */
  fail(err: unknown): void {
    this.finish(err instanceof Error ? err : new VmboxError('agentProtocol', String(err)));
  }

  private finish(err?: Error, value?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.host.release(this.id);
    for (const w of this.creditWaiters.splice(0)) w();
    if (err) this.doneDeferred.reject(err);
    else this.doneDeferred.resolve(value);
  }
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ProtocolViolation('malformed JSON');
  }
}
