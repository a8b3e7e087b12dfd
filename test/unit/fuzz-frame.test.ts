import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeFrame, FRAME_HEADER, type Frame, FrameDecoder, type Kind, MAX_PAYLOAD, type OversizedFrame } from '../../src/guest/frame.js';
import { chunked, cutsArb, fuzzParams, mutate, mutationArb } from '../fixtures/fuzz.js';

type Decoded = Frame | OversizedFrame;

/**
 * The wire format read in one pass over the whole stream, written apart from
 * FrameDecoder: what it must report whatever the chunking. `pending` is what
 * is left undecoded (0 while an oversized payload is being skipped).
 */
function referenceDecode(stream: Buffer): { frames: Decoded[]; pending: number } {
  const frames: Decoded[] = [];
  let pos = 0;
  while (pos + FRAME_HEADER <= stream.length) {
    const length = stream.readUInt32BE(pos);
    const kind = stream.readUInt8(pos + 4);
    const channel = stream.readUInt32BE(pos + 5);
    if (length > MAX_PAYLOAD) {
      frames.push({ oversized: true, kind, channel, length });
      pos += FRAME_HEADER + length;
      continue;
    }
    if (pos + FRAME_HEADER + length > stream.length) break;
    frames.push({ kind, channel, payload: stream.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + length) });
    pos += FRAME_HEADER + length;
  }
  return { frames, pending: Math.max(0, stream.length - pos) };
}

/** Bytes the decoder holds between pushes (its own count, read for the bound it must keep). */
const held = (d: FrameDecoder) => (d as unknown as { buffered: number }).buffered;

/** Plain values, so a mismatch prints readably. */
const plain = (f: Decoded) =>
  'oversized' in f ? f : { kind: f.kind, channel: f.channel, length: f.payload.length, payload: f.payload.toString('hex') };

/** Feeds the chunks one by one, checking the buffering bound after each; returns everything decoded. */
function decodeChunks(chunks: Buffer[]): { frames: Decoded[]; decoder: FrameDecoder } {
  const decoder = new FrameDecoder();
  const frames: Decoded[] = [];
  for (const c of chunks) {
    frames.push(...decoder.push(c));
    // At most one incomplete frame waits: its header and less than MAX_PAYLOAD of payload.
    assert.ok(held(decoder) < FRAME_HEADER + MAX_PAYLOAD, `holds ${held(decoder)} bytes`);
    assert.ok(held(decoder) >= 0);
  }
  return { frames, decoder };
}

function assertMatchesReference(stream: Buffer, chunks: Buffer[]): void {
  const { frames, decoder } = decodeChunks(chunks);
  const ref = referenceDecode(stream);
  assert.deepEqual(frames.map(plain), ref.frames.map(plain));
  assert.equal(held(decoder), ref.pending, 'what is left undecoded');
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const channelArb = fc.oneof(fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff), u32);
/** Payload sizes, small mostly, with the edges of the limit now and then (filled from a seed: fast to make). */
const payloadArb = fc
  .tuple(
    fc.oneof(
      { weight: 8, arbitrary: fc.nat(300) },
      { weight: 1, arbitrary: fc.constantFrom(FRAME_HEADER - 1, FRAME_HEADER, 65536, MAX_PAYLOAD - 1, MAX_PAYLOAD) },
    ),
    fc.nat(255),
  )
  .map(([n, seed]) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = (seed + i * 31) & 0xff;
    return b;
  });
const frameArb = fc.record({ kind: fc.nat(255), channel: channelArb, payload: payloadArb });

/** Headers whose length field lies now and then: past the limit, past the stream's end, or zero. */
const lyingLength = fc.oneof(
  fc.constantFrom(0, 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, MAX_PAYLOAD + 100, 0x7fffffff, 0xffffffff),
  fc.integer({ min: MAX_PAYLOAD + 1, max: MAX_PAYLOAD + 4096 }),
  u32,
);
const segmentArb = fc.oneof(
  frameArb.map((f) => encodeFrame(f.kind as Kind, f.channel, f.payload)),
  fc.tuple(lyingLength, fc.nat(255), u32, fc.uint8Array({ maxLength: 64 })).map(([length, kind, channel, rest]) => {
    const h = Buffer.alloc(FRAME_HEADER);
    h.writeUInt32BE(length, 0);
    h.writeUInt8(kind, 4);
    h.writeUInt32BE(channel, 5);
    return Buffer.concat([h, rest]);
  }),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
);
/** A byte stream built from frames, lying headers and raw bytes. */
const streamArb = fc.array(segmentArb, { maxLength: 8 }).map((s) => Buffer.concat(s));

describe('FrameDecoder under random input', () => {
  it('decodes random streams, however chunked, exactly as the whole stream read at once, holding less than one frame', () => {
    fc.assert(
      fc.property(streamArb, cutsArb, (stream, cuts) => assertMatchesReference(stream, chunked(stream, cuts))),
      fuzzParams(300),
    );
  });

  it('decodes random streams fed one byte at a time', () => {
    const small = fc.array(segmentArb, { maxLength: 4 }).map((s) => Buffer.concat(s).subarray(0, 4096));
    fc.assert(
      fc.property(small, (stream) =>
        assertMatchesReference(
          stream,
          [...stream].map((b) => Buffer.of(b)),
        ),
      ),
      fuzzParams(100),
    );
  });

  it('gives back valid frames as they were encoded, whatever the chunk boundaries', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 6 }), cutsArb, (frames, cuts) => {
        const stream = Buffer.concat(frames.map((f) => encodeFrame(f.kind as Kind, f.channel, f.payload)));
        const { frames: out, decoder } = decodeChunks(chunked(stream, cuts));
        assert.deepEqual(
          out.map(plain),
          frames.map((f) => plain({ kind: f.kind, channel: f.channel >>> 0, payload: f.payload })),
        );
        assert.equal(held(decoder), 0);
      }),
      fuzzParams(150),
    );
  });

  it('stays in step with the reference on mutated valid streams', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 5 }),
        fc.array(mutationArb, { minLength: 1, maxLength: 6 }),
        cutsArb,
        (frames, edits, cuts) => {
          const valid = Buffer.concat(frames.map((f) => encodeFrame(f.kind as Kind, f.channel, f.payload)));
          const stream = mutate(valid, edits);
          assertMatchesReference(stream, chunked(stream, cuts));
        },
      ),
      fuzzParams(200),
    );
  });

  it('refuses to encode a payload past the limit, with the RangeError it documents', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX_PAYLOAD + 1, max: MAX_PAYLOAD + 64 }), (n) => {
        assert.throws(() => encodeFrame(1, 1, Buffer.alloc(n)), RangeError);
      }),
      fuzzParams(5),
    );
  });
});
