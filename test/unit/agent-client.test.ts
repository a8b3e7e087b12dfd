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

  it('takes a violation of the protocol as the end of the connection: every call fails with it, the listener hears once', async () => {
    const oversized = () => {
      const header = Buffer.alloc(FRAME_HEADER);
      header.writeUInt32BE(0xffffffff, 0);
      header.writeUInt8(Kind.stdout, 4);
      header.writeUInt32BE(1, 5);
      return header;
    };
    const credit = (channel: number, n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n, 0);
      return encodeFrame(Kind.credit, channel, b);
    };
    // Each case: what a hostile guest sends once the bystander command (channel 1) runs, and the reason the host gives.
    const cases: Array<[string, (c: AgentClient) => Buffer[], RegExp]> = [
      ['a length past the maximum', () => [oversized()], /over the 1048576-byte maximum/],
      ['malformed JSON', () => [encodeFrame(Kind.done, 1, Buffer.from('{not json'))], /malformed JSON/],
      ['an unknown kind', () => [encodeFrame(99 as Kind, 1, Buffer.alloc(0))], /unknown kind 99/],
      ['a channel never opened', () => [encodeFrame(Kind.stdout, 4242, Buffer.from('x'))], /channel 4242, which was never opened/],
      ['a connection on a host channel', () => [encodeJson(Kind.connect, 7, { address: '1.2.3.4', port: 80 })], /may not open/],
      ['another hello', () => [encodeJson(Kind.hello, 0, { generation: 1, agentVersion: 'x' })], /control channel/],
      ['an exit with a wrong type', () => [encodeJson(Kind.done, 1, { exitCode: 'zero', timedOut: false })], /exitCode/],
      ['a pid that is no pid', () => [encodeJson(Kind.reply, 1, { pid: -5 })], /pid/],
      ['credit nobody sent', () => [credit(1, WINDOW)], /credit past the/],
      [
        'data past the window without credit',
        () => Array.from({ length: 3 }, () => encodeFrame(Kind.stdout, 1, Buffer.alloc(MAX_PAYLOAD))),
        /without credit/,
      ],
    ];
    for (const [what, attack, reason] of cases) {
      const a = fakeAgent();
      const c = await AgentClient.connect(a.stream, { timeoutMs: 1000 });
      const heard: Error[] = [];
      c.onViolation((err) => heard.push(err));
      // Output is held by a consumer that never finishes: the host grants no credit back.
      const bystander = c.exec({ argv: ['sleep'] }, { onStdout: () => new Promise<void>(() => {}) });
      for (const b of attack(c)) a.send(b);
      await assert.rejects(bystander.exit, { code: 'agentProtocol', message: reason }, what);
      assert.equal(heard.length, 1, what);
      assert.match(heard[0]?.message ?? '', /^agent protocol violation: /, what);
      assert.ok(c.isClosed, what);
      assert.throws(() => c.exec({ argv: ['true'] }), { code: 'agentProtocol' }, what);
      // The listener, set late, still hears of it.
      let late = 0;
      c.onViolation(() => late++);
      assert.equal(late, 1, what);
    }
  });

  it('refuses file listings, watch events and stats no agent would send', async () => {
    const each = async (what: string, call: (c: AgentClient) => Promise<unknown>, answer: (channel: number) => Buffer, reason: RegExp) => {
      const peer = fakeAgent();
      const c = await AgentClient.connect(peer.stream, { timeoutMs: 1000 });
      const pending = call(c);
      await tick();
      const ch = peer.received.find((f) => f.kind === Kind.open)?.channel ?? 0;
      peer.send(answer(ch));
      await assert.rejects(pending, { code: 'agentProtocol', message: reason }, what);
      assert.ok(c.isClosed, what);
    };
    const entry = (name: string) => ({ name, type: 'file', size: 1, mode: 420, uid: 0, gid: 0, mtimeMs: 0 });
    for (const name of ['a/b', '..', '.', 'nul\0name', 'x'.repeat(100_000), '']) {
      await each(
        `list ${name.slice(0, 8)}`,
        (c) => c.list('/tmp'),
        (ch) => encodeJson(Kind.done, ch, { entries: [entry(name)] }),
        /directory entry/,
      );
    }
    await each(
      'list without entries',
      (c) => c.list('/tmp'),
      (ch) => encodeJson(Kind.done, ch, { entries: 'no' }),
      /entries/,
    );
    for (const path of ['/etc/passwd', '/tmp/w/../../etc', 'relative', '/tmp/wx']) {
      await each(
        `watch ${path}`,
        (c) => c.watch('/tmp/w', {}, () => {}).ready,
        (ch) => encodeJson(Kind.reply, ch, { events: [{ type: 'create', path, isDir: false }] }),
        /outside \/tmp\/w/,
      );
    }
    // Without the disk's figures (the agent could not measure its root) the stats are fine; the disk counts 0.
    const honest = fakeAgent();
    const client = await AgentClient.connect(honest.stream, { timeoutMs: 1000 });
    const stats = client.stats();
    await tick();
    const statsCh = honest.received.find((f) => f.kind === Kind.open)?.channel ?? 0;
    honest.send(encodeJson(Kind.done, statsCh, { memTotalBytes: 4, memUsedBytes: 2, processes: 3 }));
    assert.deepEqual(await stats, { memTotalBytes: 4, memUsedBytes: 2, diskTotalBytes: 0, diskUsedBytes: 0, processes: 3 });
    for (const stats of [{ memTotalBytes: -1 }, { memTotalBytes: 1e300 }, { processes: 'many' }]) {
      await each(
        `stats ${JSON.stringify(stats)}`,
        (c) => c.stats(),
        (ch) => encodeJson(Kind.done, ch, { memTotalBytes: 1, memUsedBytes: 1, processes: 1, ...stats }),
        /stats payload/,
      );
    }
  });

  it('gives up on a file transfer the guest goes quiet in', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000, requestTimeoutMs: 50 });
    const chunks: string[] = [];
    const reading = (async () => {
      for await (const chunk of c.readFile('/big')) chunks.push(chunk.toString());
    })();
    await tick();
    const ch = a.received.find((f) => f.kind === Kind.open)?.channel ?? 0;
    a.send(encodeFrame(Kind.data, ch, Buffer.from('first part')));
    await assert.rejects(reading, { code: 'commandTimeout', message: /reading \/big: the guest agent sent nothing for 50 ms/ });
    assert.deepEqual(chunks, ['first part'], 'what came is delivered, then the read fails: it does not end as if whole');
    await assert.rejects(c.writeFile('/out', 'data'), { code: 'commandTimeout', message: /writing \/out/ });
  });

  it('gives up on a request the guest never answers', async () => {
    const a = fakeAgent();
    const c = await AgentClient.connect(a.stream, { timeoutMs: 1000, requestTimeoutMs: 50 });
    const started = Date.now();
    await assert.rejects(c.ping(), { code: 'commandTimeout', message: /did not answer ping within 50 ms/ });
    assert.ok(Date.now() - started < 1000);
    // The channel was given up on: the agent is told to drop it.
    await tick();
    assert.ok(a.received.some((f) => f.kind === Kind.error));
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
