import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { extract, type Header, pack } from 'tar-stream';
import { VmboxError } from '../../src/errors.js';
import { applyLayer } from '../../src/images/unpack.js';
import { fuzzParams, mutate, mutationArb } from '../fixtures/fuzz.js';

/**
 * Every run unpacks into `<deep>/p/root` beside sentinel files in `<deep>/p`, where
 * `<deep>` is 32 directories below a temporary folder of this test: link
 * targets climb at most a few levels, so whatever escapes the root still lands
 * in this test's own tree, where it is seen (and never in the host's).
 */
const DEPTH = 32;
const outer = mkdtempSync(join(tmpdir(), 'vmbox-fuzz-unpack-'));
const levels = Array.from({ length: DEPTH }, (_, i) => `l${i}`);
const deep = join(outer, ...levels);
const P = join(deep, 'p');
const ROOT = join(P, 'root');
/**
 * Files outside the root that must stay as they are: one beside it, and some
 * in a directory beside it (a removal aimed there empties it whatever order
 * the directory lists in; one aimed above the root may take the root first).
 */
const SENTINEL = join(P, 'sentinel');
const OUTSIDE = join(P, 'outside');
const SENTINELS = [SENTINEL, ...['s0', 's1', 's2'].map((n) => join(OUTSIDE, n))];
const LONG = `long-${'n'.repeat(120)}`;
/** Name components that collide often, climb, hide and whiteout. */
const component = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'b') },
  { weight: 2, arbitrary: fc.constant('.wh..wh..opq') },
  { weight: 3, arbitrary: fc.constantFrom('c', 'dev', '.', '..', LONG, '.wh.a', '.wh.b', '.wh..', '.wh...', '.wh.') },
);
const nameArb = fc
  .tuple(fc.boolean(), fc.array(component, { minLength: 1, maxLength: 3 }), fc.boolean())
  .map(([abs, parts, slash]) => `${abs ? '/' : ''}${parts.join('/')}${slash ? '/' : ''}`);
/**
 * Link targets: inside, climbing, absolute (which the unpacker reads inside the
 * root), and at this test's own files. None names a host path that exists:
 * an unpacker that let the kernel follow a layer's link would act there.
 */
const targetArb = fc.oneof(
  nameArb.map((n) => n.replace(/^\/+/, '')).filter(Boolean),
  fc.constantFrom('..', '../..', '../../..', '../sentinel', '../outside', '../../outside/s0', 'a/../..', '{ABSENT}', '{ABSENT}/a'),
  fc.constantFrom('{P}', '{P}/sentinel', '{P}/outside', '{P}/outside/s1', '{P}/root', '{DEEP}', '{P}/../..'),
);
const ABSENT = `${outer}-absent`;
const placeholders = (s: string) => s.replaceAll('{P}', P).replaceAll('{DEEP}', deep).replaceAll('{ABSENT}', ABSENT);

const numberArb = fc.oneof(fc.constantFrom(0, 1, 1000, 65534, 0o777777), fc.nat(0o777777));
const entryArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('file' as const), name: nameArb, body: fc.uint8Array({ maxLength: 600 }) }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant('directory' as const), name: nameArb }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant('symlink' as const), name: nameArb, linkname: targetArb }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('link' as const), name: nameArb, linkname: targetArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constantFrom('character-device' as const, 'block-device' as const, 'fifo' as const),
      name: nameArb,
      devmajor: fc.constantFrom(0, 1, 7, 8, 4095),
      devminor: fc.constantFrom(0, 3, 5, 255, 65535),
    }),
  },
);
/** A denser mix for one hazard: directories with opaque markers or whiteouts that a later entry turns into a link (or a link into a directory). */
const dirArb = fc.constantFrom('a', 'b', 'a/b', 'b/a');
const linkedDirEntryArb = fc.oneof(
  dirArb.map((d) => ({ type: 'file' as const, name: `${d}/.wh..wh..opq`, body: new Uint8Array() })),
  fc
    .tuple(dirArb, fc.constantFrom('a', 'b', 'c'))
    .map(([d, n]) => ({ type: 'file' as const, name: `${d}/.wh.${n}`, body: new Uint8Array() })),
  fc
    .tuple(dirArb, fc.constantFrom('a', 'b', 'c'))
    .map(([d, n]) => ({ type: 'file' as const, name: `${d}/${n}`, body: new Uint8Array([1]) })),
  dirArb.map((d) => ({ type: 'directory' as const, name: d })),
  fc.tuple(dirArb, targetArb).map(([d, t]) => ({ type: 'symlink' as const, name: d, linkname: t })),
);

/** Pax records that override the header: names with NUL bytes or climbing, sizes that lie. */
const paxArb = fc.oneof(
  fc.record({ path: fc.constantFrom('a\0b', '../../x', `${LONG}/${LONG}`, '.wh...', 'é/ü') }),
  fc.record({ linkpath: fc.constantFrom('a\0', '../../../..', '{P}/sentinel') }),
  fc.record({ size: fc.constantFrom('0', '1', '-1', 'x', '99999999999') }),
  fc.record({ uid: fc.constantFrom('99999999999', '-5') }),
);
const metaArb = fc.record(
  { mode: fc.nat(0o7777), uid: numberArb, gid: numberArb, mtime: fc.integer({ min: 0, max: 2 ** 33 - 1 }), pax: paxArb },
  { requiredKeys: ['mode', 'uid', 'gid', 'mtime'] },
);
const archiveArb = fc.array(fc.tuple(entryArb, metaArb), { maxLength: 10 });
type Archive = typeof archiveArb extends fc.Arbitrary<infer T> ? T : never;

/** The archive tar-stream writes for the entries (pax headers for long or non-ASCII names). */
async function build(entries: Archive): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  for (const [e, m] of entries) {
    const header: Partial<Header> & Pick<Header, 'name'> = {
      name: e.name,
      type: e.type,
      mode: m.mode,
      uid: m.uid,
      gid: m.gid,
      mtime: new Date(m.mtime * 1000),
    };
    if (m.pax) header.pax = Object.fromEntries(Object.entries(m.pax).map(([k, v]) => [k, placeholders(v)]));
    if ('linkname' in e) header.linkname = placeholders(e.linkname);
    if ('devmajor' in e) Object.assign(header, { devmajor: e.devmajor, devminor: e.devminor });
    const body = 'body' in e ? Buffer.from(e.body) : undefined;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body) p.entry(header, body, done);
      else p.entry(header, done);
    });
  }
  p.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/**
 * Whether every link in the archive (as tar-stream reads it, the unpacker's
 * reader) stays in this test's tree even if the kernel followed it: absolute
 * only under it, climbing a few levels at most. Edited archives that break
 * this are skipped, so a regression can never reach the host's files.
 */
async function linksStayInTree(tar: Buffer): Promise<boolean> {
  const ex = extract();
  Readable.from([tar])
    .on('error', () => {})
    .pipe(ex);
  try {
    for await (const entry of ex) {
      const target = entry.header.linkname ?? '';
      if (target.startsWith('/') && !target.startsWith(`${outer}`)) return false;
      if (target.split('/').filter((c) => c === '..').length > 8) return false;
      entry.resume();
    }
  } catch {}
  return true;
}

const FIELDS = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  typeflag: [156, 1],
  linkname: [157, 100],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const;

/** Offsets of the 512-byte blocks whose checksum holds: the headers. */
function headerOffsets(tar: Buffer): number[] {
  const out: number[] = [];
  for (let o = 0; o + 512 <= tar.length; o += 512) {
    const block = tar.subarray(o, o + 512);
    if (block.every((b) => b === 0)) continue;
    const stored = Number.parseInt(block.subarray(148, 156).toString().replace(/\0.*$/, '').trim(), 8);
    if (checksum(block) === stored) out.push(o);
  }
  return out;
}

function checksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (block[i] as number);
  return sum;
}

/** A header field overwritten (octal numbers, base-256 numbers, raw bytes), its checksum made right again so the entry is read. */
const fieldEditArb = fc.record({
  header: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
  field: fc.constantFrom(...(Object.keys(FIELDS) as Array<keyof typeof FIELDS>)),
  value: fc.oneof(
    fc.constantFrom(
      '0000000\0',
      '7777777\0',
      '\0',
      '-1',
      ' 12 ',
      'zz',
      '..',
      '../../sentinel',
      '../outside',
      '.wh...',
      '5',
      '2',
      '3',
      '4',
      '6',
      '1',
      'L',
      'x',
    ),
    fc.nat(2 ** 20).map((n) => `${n.toString(8)}\0`),
    fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => Buffer.from([0x80, ...b]).toString('latin1')),
    fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => Buffer.from([0xff, ...b]).toString('latin1')),
  ),
});
type FieldEdit = typeof fieldEditArb extends fc.Arbitrary<infer T> ? T : never;

function editFields(tar: Buffer, edits: FieldEdit[]): Buffer {
  const out = Buffer.from(tar);
  const offsets = headerOffsets(out);
  for (const e of edits) {
    const at = offsets[Math.floor(e.header * offsets.length)];
    if (at === undefined) continue;
    const [off, len] = FIELDS[e.field];
    const bytes = Buffer.from(e.value, 'latin1').subarray(0, len);
    out.fill(0, at + off, at + off + len);
    bytes.copy(out, at + off);
    const block = out.subarray(at, at + 512);
    Buffer.from(`${checksum(block).toString(8).padStart(6, '0')}\0 `).copy(block, 148);
  }
  return out;
}

/** An error that says what went wrong: the unpacker's own, a refused file operation (naming the call), or tar-stream's verdict on the archive. */
function isClearError(err: unknown): boolean {
  if (err instanceof VmboxError) return true;
  if (!(err instanceof Error) || err instanceof TypeError || err instanceof RangeError) return false;
  if (typeof (err as NodeJS.ErrnoException).syscall === 'string') return true;
  return /tar header|Unexpected end of data|Invalid header|Header exceeds max size/.test(err.message);
}

const SENTINEL_TEXT = 'left alone\n';
function prepare(): void {
  rmSync(P, { recursive: true, force: true });
  mkdirSync(ROOT, { recursive: true });
  mkdirSync(OUTSIDE);
  for (const f of SENTINELS) {
    writeFileSync(f, SENTINEL_TEXT, { mode: 0o640 });
    utimesSync(f, 1_000_000, 1_000_000);
  }
}

/** Nothing outside the root changed: this test's tree holds only its chain, the root and the untouched sentinels. */
function assertContained(what: string): void {
  let dir = outer;
  for (const l of levels) {
    assert.deepEqual(readdirSync(dir), [l], `${what}: something appeared beside ${join(dir, l)}`);
    dir = join(dir, l);
  }
  assert.deepEqual(readdirSync(deep), ['p'], `${what}: ${deep}`);
  assert.deepEqual(readdirSync(P).sort(), ['outside', 'root', 'sentinel'], `${what}: beside the root`);
  assert.deepEqual(readdirSync(OUTSIDE).sort(), ['s0', 's1', 's2'], `${what}: ${OUTSIDE}`);
  assert.ok(lstatSync(ROOT).isDirectory(), `${what}: the root is no longer a directory`);
  for (const f of SENTINELS) {
    const s = lstatSync(f);
    assert.ok(s.isFile(), `${what}: ${f} is no longer a file`);
    assert.equal(readFileSync(f, 'utf8'), SENTINEL_TEXT, `${what}: ${f}'s content`);
    assert.equal(s.mode & 0o7777, 0o640, `${what}: ${f}'s mode`);
    assert.equal(s.nlink, 1, `${what}: ${f} was linked into the root`);
    assert.equal(s.uid, process.getuid?.() ?? s.uid, `${what}: ${f}'s owner`);
    assert.equal(s.mtimeMs, 1_000_000_000, `${what}: ${f}'s time`);
  }
}

/** Applies the archive, then checks containment; returns the error, if any (which must be a clear one). */
async function unpackChecked(tar: Buffer, what: () => string): Promise<void> {
  fc.pre(await linksStayInTree(tar));
  prepare();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    applyLayer(ROOT, Readable.from([tar])).then(
      () => 'ok',
      (err: unknown) => err,
    ),
    new Promise((r) => {
      timer = setTimeout(() => r('hung'), 10_000);
    }),
  ]);
  clearTimeout(timer);
  assert.notEqual(outcome, 'hung', `${what()}: applyLayer did not finish in 10 s`);
  if (outcome !== 'ok') assert.ok(isClearError(outcome), `${what()}: failed with ${String((outcome as Error)?.stack ?? outcome)}`);
  assertContained(what());
}

const describeArchive = (entries: Archive) =>
  JSON.stringify(entries.map(([e, m]) => ({ ...e, body: 'body' in e ? `${e.body.length} bytes` : undefined, ...m })));

describe('applyLayer under hostile archives', () => {
  after(() => rmSync(outer, { recursive: true, force: true }));

  it('never writes outside the root, and succeeds or fails with a clear error, for random archives of every entry type', async () => {
    await fc.assert(
      fc.asyncProperty(archiveArb, async (entries) => {
        await unpackChecked(await build(entries), () => describeArchive(entries));
      }),
      fuzzParams(150),
    );
  });

  it('holds the same when directories with opaque markers or whiteouts become links', async () => {
    const arb = fc.array(fc.tuple(linkedDirEntryArb, metaArb), { minLength: 2, maxLength: 8 });
    await fc.assert(
      fc.asyncProperty(arb, async (entries) => {
        await unpackChecked(await build(entries), () => describeArchive(entries));
      }),
      fuzzParams(150),
    );
  });

  it('holds the same for archives whose header fields were rewritten (checksums fixed, so they are read)', async () => {
    await fc.assert(
      fc.asyncProperty(archiveArb, fc.array(fieldEditArb, { minLength: 1, maxLength: 4 }), async (entries, edits) => {
        await unpackChecked(editFields(await build(entries), edits), () => `${describeArchive(entries)} edited ${JSON.stringify(edits)}`);
      }),
      fuzzParams(150),
    );
  });

  it('holds the same for archives with random bytes changed', async () => {
    await fc.assert(
      fc.asyncProperty(archiveArb, fc.array(mutationArb, { minLength: 1, maxLength: 6 }), async (entries, edits) => {
        await unpackChecked(mutate(await build(entries), edits), () => `${describeArchive(entries)} mutated ${JSON.stringify(edits)}`);
      }),
      fuzzParams(100),
    );
  });
});
