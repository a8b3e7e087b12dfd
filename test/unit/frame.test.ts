import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  encodeCredit,
  encodeFrame,
  encodeJson,
  FRAME_HEADER,
  FrameDecoder,
  Kind,
  MAX_PAYLOAD,
  PROTOCOL_GENERATION,
  WINDOW,
} from '../../src/guest/frame.js';

// The wire format of protocol generation 1, frozen. A change here is a new generation.
describe('agent frame format (golden)', () => {
  it('encodes an open request exactly', () => {
    const bytes = encodeJson(Kind.open, 1, { op: 'ping' });
    assert.equal(bytes.toString('hex'), `0000000d0200000001${Buffer.from('{"op":"ping"}').toString('hex')}`);
  });

  it('encodes credit as a big-endian u32 payload', () => {
    assert.equal(encodeCredit(0x01020304, 0x00100000).toString('hex'), '000000040b0102030400100000');
  });

  it('encodes raw stdin bytes unchanged, every byte value', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const f = encodeFrame(Kind.stdin, 7, all);
    assert.equal(f.length, FRAME_HEADER + 256);
    assert.equal(f.subarray(0, FRAME_HEADER).toString('hex'), '000001000600000007');
    assert.deepEqual(f.subarray(FRAME_HEADER), all);
  });

  it('fixes the kind numbers and limits', () => {
    assert.deepEqual(Kind, {
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
      resize: 13,
      connect: 14,
      dns: 15,
    });
    assert.equal(PROTOCOL_GENERATION, 1);
    assert.equal(MAX_PAYLOAD, 1024 * 1024);
    assert.equal(WINDOW, 2 * 1024 * 1024);
  });

  it('matches the C agent header constants', () => {
    const h = readFileSync(new URL('../../agent/proto.h', import.meta.url), 'utf8');
    const num = (name: string) =>
      Number(
        new RegExp(`#define ${name} \\(?([^)\\n/]+)`)
          .exec(h)?.[1]
          ?.split('*')
          .reduce((a, b) => a * Number(b.trim()), 1),
      );
    assert.equal(num('PROTO_GENERATION'), PROTOCOL_GENERATION);
    assert.equal(num('FRAME_HEADER'), FRAME_HEADER);
    assert.equal(num('MAX_PAYLOAD'), MAX_PAYLOAD);
    assert.equal(num('WINDOW'), WINDOW);
    for (const [name, value] of Object.entries(Kind)) {
      const m = new RegExp(`K_${name.toUpperCase()} = (\\d+)`).exec(h);
      assert.equal(Number(m?.[1]), value, `K_${name.toUpperCase()}`);
    }
  });

  it('refuses to encode an oversized payload', () => {
    assert.throws(() => encodeFrame(Kind.data, 1, Buffer.alloc(MAX_PAYLOAD + 1)), RangeError);
  });
});

describe('FrameDecoder', () => {
  it('reassembles frames split at every byte boundary', () => {
    const stream = Buffer.concat([encodeJson(Kind.done, 3, { ok: true }), encodeFrame(Kind.stdout, 3, Buffer.from('hello'))]);
    for (let cut = 1; cut < stream.length; cut++) {
      const d = new FrameDecoder();
      const frames = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      assert.equal(frames.length, 2);
      const [a, b] = frames as Array<{ kind: number; channel: number; payload: Buffer }>;
      assert.equal(a?.kind, Kind.done);
      assert.equal(a?.payload.toString(), '{"ok":true}');
      assert.equal(b?.channel, 3);
      assert.equal(b?.payload.toString(), 'hello');
    }
  });

  it('reports an oversized frame, skips its payload, and keeps decoding', () => {
    const header = Buffer.alloc(FRAME_HEADER);
    header.writeUInt32BE(MAX_PAYLOAD + 10, 0);
    header.writeUInt8(Kind.stdout, 4);
    header.writeUInt32BE(5, 5);
    const d = new FrameDecoder();
    const first = d.push(Buffer.concat([header, Buffer.alloc(1000)]));
    assert.deepEqual(first, [{ oversized: true, kind: Kind.stdout, channel: 5, length: MAX_PAYLOAD + 10 }]);
    const rest = d.push(Buffer.concat([Buffer.alloc(MAX_PAYLOAD + 10 - 1000), encodeJson(Kind.done, 6, {})]));
    assert.equal(rest.length, 1);
    assert.equal((rest[0] as { channel: number }).channel, 6);
  });
});
