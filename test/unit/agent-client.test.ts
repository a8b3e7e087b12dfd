import assert from 'node:assert/strict';
import { Duplex, PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { AgentClient } from '../../src/guest/client.js';
import { encodeFrame, encodeJson, FRAME_HEADER, FrameDecoder, Kind, MAX_PAYLOAD, WINDOW } from '../../src/guest/frame.js';

/**
 * A scripted peer standing in for the agent: this file tests the host client's
 * handling of the wire, not the agent (the VM tests cover the real one).
 */
function fakeAgent() {
  const toHost = new PassThrough();
  const toAgent = new PassThrough();
  const stream = Duplex.from({ readable: toHost, writable: toAgent });
  const decoder = new FrameDecoder();
  const received: Array<{ kind: number; channel: number; payload: Buffer }> = [];
  toAgent.on('data', (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) {
      if ('oversized' in f) continue;
      received.push(f);
      if (f.kind === Kind.hello) toHost.write(encodeJson(Kind.hello, 0, { generation: 1, agentVersion: 'test' }));
    }
  });
  return { stream, received, send: (b: Buffer) => toHost.write(b), end: () => toHost.destroy() };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('AgentClient against a scripted peer', () => {
  it('handshakes and refuses another protocol generation', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000 });
    assert.equal(c.agent?.agentVersion, 'test');
    const hello = JSON.parse(a.received[0]?.payload.toString() ?? '{}');
    assert.equal(hello.generation, 1);
    assert.ok(Math.abs(hello.timeMs - Date.now()) < 5000, 'sends the wall clock');

    const toHost = new PassThrough();
    const old = Duplex.from({ readable: toHost, writable: new PassThrough() });
    toHost.write(encodeJson(Kind.hello, 0, { generation: 99, agentVersion: 'x' }));
    await assert.rejects(AgentClient.connect(old, { timeoutMs: 1000 }), { code: 'agentProtocol', message: /generation 99/ });
  });

  it('holds a command to its timeout when the guest does not: the host cuts it off after a grace', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000, timeoutGraceMs: 100 });
    const started = Date.now();
    const silent = c.exec({ argv: ['sleep', '100'], timeoutMs: 50 });
    await assert.rejects(silent.exit, { code: 'commandTimeout', message: /did not end it within 100 ms more/ });
    assert.ok(Date.now() - started < 1000, 'cut off at timeout + grace, not left waiting');
    await tick();
    assert.ok(
      a.received.some((f) => f.kind === Kind.error && f.channel === silent.channel),
      'the agent is told to drop it',
    );
    // One that ends in time is left alone.
    const quick = c.exec({ argv: ['true'], timeoutMs: 50 });
    a.send(encodeJson(Kind.done, quick.channel, { exitCode: 0, timedOut: false }));
    assert.deepEqual(await quick.exit, { exitCode: 0, timedOut: false });
  });

  it('fails only the channel that got a malformed frame', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000 });
    const victim = c.exec({ argv: ['x'] });
    const bystander = c.exec({ argv: ['y'] });
    const header = Buffer.alloc(FRAME_HEADER);
    header.writeUInt32BE(MAX_PAYLOAD + 1, 0);
    header.writeUInt8(Kind.stdout, 4);
    header.writeUInt32BE(victim.channel, 5);
    a.send(Buffer.concat([header, Buffer.alloc(MAX_PAYLOAD + 1)]));
    await assert.rejects(victim.exit, { code: 'agentProtocol' });
    // The client told the agent to abandon that channel.
    await tick();
    assert.ok(a.received.some((f) => f.kind === Kind.error && f.channel === victim.channel));
    // Malformed JSON and an unknown kind on other channels fail those alone.
    const third = c.exec({ argv: ['z'] });
    a.send(encodeFrame(Kind.done, third.channel, Buffer.from('{not json')));
    await assert.rejects(third.exit, { code: 'agentProtocol', message: /malformed JSON/ });
    a.send(encodeJson(Kind.done, bystander.channel, { exitCode: 3, timedOut: false }));
    assert.deepEqual(await bystander.exit, { exitCode: 3, timedOut: false });
  });

  it('stops sending at the credit window and resumes on credit', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000 });
    const p = c.exec({ argv: ['cat'], stdin: true });
    let written = false;
    const write = p.write(Buffer.alloc(WINDOW + 1000)).then(() => {
      written = true;
    });
    await tick();
    const sent = () => a.received.filter((f) => f.kind === Kind.stdin).reduce((n, f) => n + f.payload.length, 0);
    assert.equal(sent(), WINDOW);
    assert.equal(written, false);
    const credit = Buffer.alloc(4);
    credit.writeUInt32BE(1000, 0);
    a.send(encodeFrame(Kind.credit, p.channel, credit));
    await write;
    await tick(); // frames of one tick leave together, at its end
    assert.equal(sent(), WINDOW + 1000);
  });

  it('gives credit back only as the consumer finishes with the data', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000 });
    let release: () => void = () => {};
    const p = c.exec(
      { argv: ['x'] },
      {
        onStdout: () =>
          new Promise<void>((r) => {
            release = r;
          }),
      },
    );
    a.send(encodeFrame(Kind.stdout, p.channel, Buffer.alloc(WINDOW / 2)));
    await tick();
    const credits = () => a.received.filter((f) => f.kind === Kind.credit && f.channel === p.channel);
    assert.equal(credits().length, 0);
    release();
    await tick();
    assert.equal(credits()[0]?.payload.readUInt32BE(0), WINDOW / 2);
  });

  it('rejects everything in flight with the transport error when the stream closes', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000 });
    const p = c.exec({ argv: ['sleep'] });
    a.end();
    await assert.rejects(p.exit, { code: 'vmDied' });
    assert.throws(() => c.exec({ argv: ['true'] }), { code: 'vmDied' });
  });

  it('carries a connection the agent opens: bytes both ways with half-close, a reset, a DNS query', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000 });
    const got: Array<{ to: unknown; data: string; ended: boolean }> = [];
    c.network = {
      connection(conn, to) {
        const rec = { to, data: '', ended: false };
        got.push(rec);
        conn.on('data', (b: Buffer) => {
          rec.data += b.toString();
        });
        conn.on('end', () => {
          rec.ended = true;
          conn.end('bye');
        });
      },
      dns: async (q) => Buffer.concat([q, Buffer.from('!')]),
    };
    const id = 0x80000001;
    a.send(encodeJson(Kind.connect, id, { address: '1.2.3.4', port: 443 }));
    a.send(encodeFrame(Kind.data, id, Buffer.from('hello')));
    a.send(encodeFrame(Kind.eof, id));
    await tick();
    await tick();
    assert.deepEqual(got[0], { to: { address: '1.2.3.4', port: 443 }, data: 'hello', ended: true });
    const back = a.received.filter((f) => f.channel === id);
    assert.deepEqual(
      back.map((f) => [f.kind, f.payload.toString()]),
      [
        [Kind.data, 'bye'],
        [Kind.eof, ''],
      ],
    );

    // A channel id in the host's own range is not one the agent may open: ignored, nothing answered.
    a.send(encodeJson(Kind.connect, 7, { address: '1.2.3.4', port: 80 }));
    await tick();
    assert.equal(got.length, 1);

    // Without a network handler a connection is reset at once.
    c.network = undefined;
    a.send(encodeJson(Kind.connect, id + 1, { address: '1.2.3.4', port: 80 }));
    await tick();
    assert.ok(a.received.some((f) => f.channel === id + 1 && f.kind === Kind.error));

    c.network = { connection: () => {}, dns: async (q) => Buffer.concat([q, Buffer.from('!')]) };
    a.send(encodeFrame(Kind.dns, 42, Buffer.from('query')));
    await tick();
    await tick();
    const answer = a.received.find((f) => f.kind === Kind.dns);
    assert.equal(answer?.channel, 42);
    assert.equal(answer?.payload.toString(), 'query!');
  });
});
