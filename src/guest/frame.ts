/**
 * Agent protocol framing, generation 1 (DESIGN.md "Agent protocol"):
 * `u32 payload length (BE) | u8 kind | u32 channel (BE) | payload`.
 * Mirrors agent/proto.h; test/unit/frame.test.ts freezes the bytes.
 */
export const PROTOCOL_GENERATION = 1;
export const FRAME_HEADER = 9;
export const MAX_PAYLOAD = 1024 * 1024;
/** Largest data frame the host sends. */
export const DATA_CHUNK = 256 * 1024;
/** Bytes either side may have in flight per channel before credit comes back. */
export const WINDOW = 2 * 1024 * 1024;

export const Kind = {
  hello: 1,
  open: 2,
  reply: 3,
  done: 4,
  error: 5,
  stdin: 6,
  stdout: 7,
  stderr: 8,
  data: 9,
  eof: 10,
  credit: 11,
  signal: 12,
  /** host → agent, JSON {cols, rows}: a PTY's window size */
  resize: 13,
  /** agent → host, JSON {address, port}: a TCP connection the guest made, on a channel the agent opens */
  connect: 14,
  /** both ways, a raw DNS message; the channel field is the query's tag */
  dns: 15,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export interface Frame {
  kind: number;
  channel: number;
  payload: Buffer;
}

export function encodeFrame(kind: Kind, channel: number, payload: Buffer | Uint8Array = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const header = Buffer.allocUnsafe(FRAME_HEADER);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt8(kind, 4);
  header.writeUInt32BE(channel >>> 0, 5);
  return Buffer.concat([header, payload]);
}

export function encodeJson(kind: Kind, channel: number, value: unknown): Buffer {
  return encodeFrame(kind, channel, Buffer.from(JSON.stringify(value)));
}

/** Channels the agent opens (guest connections) have the top bit set; ours never do. */
export const AGENT_CHANNEL_BIT = 0x80000000;

export function encodeCredit(channel: number, bytes: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(bytes, 0);
  return encodeFrame(Kind.credit, channel, p);
}

/** What the decoder reports for a frame whose length exceeds MAX_PAYLOAD: its payload is skipped. */
export interface OversizedFrame {
  oversized: true;
  kind: number;
  channel: number;
  length: number;
}

/**
 * Incremental decoder. An oversized frame is reported and its payload skipped,
 * so the stream stays in step and only that channel fails.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private skip = 0;

  push(chunk: Buffer): Array<Frame | OversizedFrame> {
    const out: Array<Frame | OversizedFrame> = [];
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.buffered);
        this.take(n);
        this.skip -= n;
        if (this.skip > 0) break;
      }
      if (this.buffered < FRAME_HEADER) break;
      const header = this.peek(FRAME_HEADER);
      const length = header.readUInt32BE(0);
      const kind = header.readUInt8(4);
      const channel = header.readUInt32BE(5);
      if (length > MAX_PAYLOAD) {
        this.take(FRAME_HEADER);
        this.skip = length;
        out.push({ oversized: true, kind, channel, length });
        continue;
      }
      if (this.buffered < FRAME_HEADER + length) break;
      this.take(FRAME_HEADER);
      out.push({ kind, channel, payload: this.take(length) });
    }
    return out;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    return Buffer.concat(this.chunks.slice(0, n)).subarray(0, n);
  }

  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0];
    if (first && first.length === n) {
      this.chunks.shift();
      return first;
    }
    if (first && first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    // The frame spans chunks: gather exactly n bytes, keep the rest.
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}
