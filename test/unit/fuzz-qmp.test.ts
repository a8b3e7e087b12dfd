import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { VmboxError } from '../../src/errors.js';
import { QmpClient, type QmpEvent, QmpParser } from '../../src/vmm/qemu/qmp.js';
import { chunked, cutsArb, fuzzParams, mutate, mutationArb } from '../fixtures/fuzz.js';

/** What the client accepts as a message: a JSON object whose `error`, if any, is an object too. */
function isMessage(line: string): boolean {
  let m: unknown;
  try {
    m = JSON.parse(line);
  } catch {
    return false;
  }
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  return isObject(m) && (!('error' in (m as object)) || isObject((m as { error: unknown }).error));
}

const timestamp = { seconds: 1, microseconds: 2 };
const eventLine = fc
  .record({ event: fc.constantFrom('SHUTDOWN', 'STOP', 'RESUME', 'MIGRATION'), data: fc.jsonValue({ maxDepth: 2 }) })
  .map((e) => JSON.stringify({ timestamp, ...e }));
/** Replies to commands nobody sent: ids far from the ones in use. */
const strayReply = fc
  .tuple(fc.integer({ min: 1000, max: 1_000_000 }), fc.jsonValue({ maxDepth: 2 }))
  .map(([id, ret]) => JSON.stringify({ return: ret, id }));
const validLine = fc.oneof(eventLine, strayReply);
/** Lines as QEMU never sends them, and the ones it does. */
const lineArb = fc.oneof(
  { weight: 3, arbitrary: validLine },
  {
    weight: 2,
    arbitrary: fc
      .tuple(validLine, fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
      .map(([l, e]) => mutate(Buffer.from(l), e).toString()),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', ' ', '\r', 'null', '1', '"x"', '[]', '{"error": null, "id": 1000}', '{"error": "no", "id": 1000}'),
  },
);

/** The lines a text makes for the parser (the text's own newlines split lines too), ids in use taken out so the model stays exact. */
function linesOf(raw: string[], idsInUse: Set<number>): string[] {
  return raw
    .join('\n')
    .split('\n')
    .filter((l) => {
      try {
        const m = JSON.parse(l) as { id?: unknown };
        return !(typeof m === 'object' && m !== null && typeof m.id === 'number' && idsInUse.has(m.id));
      } catch {
        return true;
      }
    });
}

/** A text cut at fractions of its length (the client's socket decodes UTF-8 whole characters, so strings are what the parser gets). */
function chunkedText(text: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * text.length)))].sort((a, b) => a - b);
  return [...points, text.length].map((p, i, all) => text.slice(i ? all[i - 1] : 0, p)).filter(Boolean);
}

describe('QmpParser under random input', () => {
  it('returns the messages of any lines, however chunked, or throws VmboxError at the first line that is not one', () => {
    fc.assert(
      fc.property(fc.array(lineArb, { maxLength: 10 }), cutsArb, fc.boolean(), (raw, cuts, crlf) => {
        const lines = linesOf(raw, new Set());
        const text = lines.map((l) => `${l}${crlf ? '\r\n' : '\n'}`).join('');
        const meaningful = lines.map((l) => l.trim()).filter(Boolean);
        const firstBad = meaningful.findIndex((l) => !isMessage(l));
        const expected = meaningful.slice(0, firstBad < 0 ? undefined : firstBad).map((l) => JSON.parse(l) as unknown);
        const p = new QmpParser();
        const got: unknown[] = [];
        let thrown: unknown;
        for (const c of chunkedText(text, cuts)) {
          try {
            got.push(...p.push(c));
          } catch (err) {
            thrown = err;
            break;
          }
        }
        if (firstBad < 0) {
          assert.equal(thrown, undefined);
          assert.deepEqual(got, expected);
        } else {
          assert.ok(thrown instanceof VmboxError, `threw ${String(thrown)}`);
          assert.equal(thrown.code, 'agentProtocol');
          // Messages before the bad line come out, unless they shared its chunk.
          assert.deepEqual(got, expected.slice(0, got.length));
        }
      }),
      fuzzParams(400),
    );
  });

  it('reads a line of megabytes arriving in small chunks', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 512, max: 65536 }), (mib, chunk) => {
        const value = 'x'.repeat(mib * 1024 * 1024);
        const text = `${JSON.stringify({ return: { value }, id: 7 })}\r\n`;
        const p = new QmpParser();
        const got: unknown[] = [];
        for (let i = 0; i < text.length; i += chunk) got.push(...p.push(text.slice(i, i + chunk)));
        assert.deepEqual(got, [{ return: { value }, id: 7 }]);
      }),
      fuzzParams(6),
    );
  });
});

/**
 * A stand-in for QEMU's QMP socket: greets, answers qmp_capabilities, and
 * answers each later command with the lines the current script gives, cut
 * into the script's chunks.
 */
interface Answer {
  noise: string[];
  reply: { return: unknown } | { error: { class: string; desc: string } };
  cuts: number[];
}

describe('QmpClient against a QMP socket sending random lines', () => {
  let dir: string;
  let server: net.Server;
  let script: Answer[] = [];
  const errors: unknown[] = [];
  const onUncaught = (err: unknown) => errors.push(err);
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmbox-fuzz-qmp-'));
    server = net.createServer((sock) => {
      const answers = [...script];
      sock.on('error', () => {});
      sock.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\r\n');
      let rest = '';
      sock.on('data', (d) => {
        const lines = (rest + d.toString()).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) {
          const cmd = JSON.parse(line) as { execute: string; id: number };
          if (cmd.execute === 'qmp_capabilities') {
            sock.write(`{"return": {}, "id": ${cmd.id}}\r\n`);
            continue;
          }
          const a = answers.shift();
          if (!a) continue;
          const text = [...a.noise, JSON.stringify({ ...a.reply, id: cmd.id })].map((l) => `${l}\r\n`).join('');
          for (const c of chunked(Buffer.from(text), a.cuts)) sock.write(c);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(join(dir, 'qmp.sock'), resolve));
    process.on('uncaughtException', onUncaught);
  });
  after(() => {
    process.off('uncaughtException', onUncaught);
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const answerArb = fc.record({
    // Mostly lines QEMU could send, so most connections live long enough to match several replies.
    noise: fc.array(fc.oneof({ weight: 4, arbitrary: validLine }, { weight: 1, arbitrary: lineArb }), { maxLength: 4 }),
    reply: fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => ({ return: v })),
      fc
        .record({ class: fc.constantFrom('GenericError', 'CommandNotFound'), desc: fc.string({ maxLength: 30 }) })
        .map((e) => ({ error: e })),
    ),
    cuts: cutsArb,
  });

  /** Settles within 2 s, or says it hung. */
  const settle = <T>(p: Promise<T>) =>
    Promise.race([
      p.then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
      new Promise<{ ok: false; error: string }>((r) => setTimeout(() => r({ ok: false, error: 'hung' }), 2000).unref()),
    ]);

  it('matches well-formed replies, reports anything else as a VmboxError, never throws outside a caller, never hangs', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(answerArb, { minLength: 1, maxLength: 4 }), async (answers) => {
        // Ids 2.. go to the commands below (1 is qmp_capabilities).
        const ids = new Set(answers.map((_, i) => i + 2));
        script = answers.map((a) => ({ ...a, noise: linesOf(a.noise, ids) }));
        const client = await QmpClient.connect(join(dir, 'qmp.sock'));
        const events: QmpEvent[] = [];
        client.on('event', (e) => events.push(e));
        // Events before the connection drops come out; those sharing a chunk with the bad line may be lost with it.
        const sureEvents: unknown[] = [];
        let maybeEvents: unknown[] = [];
        let dead = false;
        try {
          for (const a of script) {
            const lines = a.noise.map((l) => l.trim()).filter(Boolean);
            const bad = lines.findIndex((l) => !isMessage(l));
            if (!dead) {
              const seen = (bad < 0 ? lines : lines.slice(0, bad)).map((l) => JSON.parse(l) as object);
              const evs = seen.filter((m) => 'event' in m && !('QMP' in m));
              if (bad < 0) sureEvents.push(...evs);
              else maybeEvents = evs;
            }
            const r = await settle(client.execute('query-status', {}));
            assert.notEqual((r as { error?: unknown }).error, 'hung', 'the command never settled');
            if (dead || bad >= 0) {
              // The connection is dropped at the first line that is not a message; this and every later command fail.
              dead = true;
              assert.ok(!r.ok && r.error instanceof VmboxError, `expected a VmboxError, got ${JSON.stringify(r)}`);
            } else if ('return' in a.reply) {
              assert.ok(r.ok, `expected the reply, got ${String((r as { error: unknown }).error)}`);
              assert.deepEqual(r.value, a.reply.return);
            } else {
              assert.ok(!r.ok && r.error instanceof VmboxError);
              assert.equal((r.error as VmboxError).message, `QMP ${a.reply.error.class}: ${a.reply.error.desc}`);
            }
          }
          assert.ok(events.length >= sureEvents.length, `${events.length} events, ${sureEvents.length} expected at least`);
          assert.deepEqual(events, [...sureEvents, ...maybeEvents].slice(0, events.length));
        } finally {
          client.close();
        }
        // A closed client answers at once, never leaves a caller waiting.
        await new Promise((r) => setImmediate(r));
        const late = await settle(client.execute('query-status', {}));
        assert.ok(!late.ok && late.error instanceof VmboxError, `a command after close: ${JSON.stringify(late)}`);
        assert.deepEqual(errors, [], 'nothing thrown outside a caller');
      }),
      fuzzParams(60),
    );
  });

  it('matches a reply of megabytes written in small pieces', async () => {
    const value = 'y'.repeat(3 * 1024 * 1024);
    const cuts = Array.from({ length: 11 }, (_, i) => (i + 1) / 12);
    script = [{ noise: [], reply: { return: { value } }, cuts }];
    const client = await QmpClient.connect(join(dir, 'qmp.sock'));
    try {
      assert.deepEqual(await client.execute('query-status', {}), { value });
    } finally {
      client.close();
    }
  });
});
