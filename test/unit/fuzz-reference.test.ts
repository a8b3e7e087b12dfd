import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { VmboxError } from '../../src/errors.js';
import { formatReference, type ImageReference, parseReference } from '../../src/images/reference.js';
import { fuzzParams, mutate, mutationArb } from '../fixtures/fuzz.js';

// Docker's reference grammar (distribution/reference), which a parsed reference must fit.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/** Whatever the input, the result is a reference Docker would accept, or the parser's own error. */
function parseOrRefuse(input: string): ImageReference | undefined {
  try {
    return parseReference(input);
  } catch (err) {
    assert.ok(err instanceof VmboxError, `${JSON.stringify(input)} threw ${String(err)}`);
    assert.equal(err.code, 'invalidArgument');
    assert.match(err.message, /^invalid image reference/);
    return undefined;
  }
}

function assertWellFormed(input: string, r: ImageReference): void {
  const where = JSON.stringify(input);
  assert.match(r.registry, HOST, `${where}: registry ${JSON.stringify(r.registry)} is not a host[:port]`);
  for (const c of r.repository.split('/')) assert.match(c, PATH_COMPONENT, `${where}: repository ${r.repository}`);
  assert.ok(r.tag !== undefined || r.digest !== undefined, `${where}: neither tag nor digest`);
  if (r.tag !== undefined) assert.match(r.tag, TAG, where);
  if (r.digest !== undefined) assert.match(r.digest, DIGEST, where);
  // The normal form reads back as itself.
  const normal = formatReference(r);
  assert.deepEqual(parseReference(normal), r, `${where} → ${normal}`);
  assert.equal(formatReference(parseReference(normal)), normal);
}

const lower = 'abcdefghijklmnopqrstuvwxyz0123456789';
const lowerArb = (max: number) => fc.string({ unit: fc.constantFrom(...lower), minLength: 1, maxLength: max });
const domainComponent = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...`${lower}ABCXYZ`), minLength: 1, maxLength: 1 }),
    fc.string({ unit: fc.constantFrom(...`${lower}-ABC`), maxLength: 8 }),
    fc.string({ unit: fc.constantFrom(...`${lower}XYZ`), minLength: 1, maxLength: 1 }),
  )
  .map(([a, b, c]) => `${a}${b}${c}`);
const port = fc.integer({ min: 1, max: 65535 }).map(String);
const registryArb = fc.oneof(
  fc.tuple(fc.array(domainComponent, { minLength: 2, maxLength: 4 }), fc.option(port)).map(([d, p]) => `${d.join('.')}${p ? `:${p}` : ''}`),
  fc.tuple(domainComponent, port).map(([d, p]) => `${d}:${p}`),
  fc.option(port).map((p) => `localhost${p ? `:${p}` : ''}`),
  fc.tuple(fc.array(fc.nat(255), { minLength: 4, maxLength: 4 }), port).map(([ip, p]) => `${ip.join('.')}:${p}`),
  fc.constantFrom('docker.io', 'index.docker.io', 'registry-1.docker.io'),
);
const pathComponent = fc
  .tuple(lowerArb(8), fc.array(fc.tuple(fc.constantFrom('.', '_', '__', '-', '--'), lowerArb(6)), { maxLength: 3 }))
  .map(([head, rest]) => head + rest.map(([s, c]) => s + c).join(''));
const tagArb = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...`${lower}_ABZ`), minLength: 1, maxLength: 1 }),
    fc.string({ unit: fc.constantFrom(...`${lower}_.-ABZ`), maxLength: 127 }),
  )
  .map(([a, b]) => a + b);
const digestArb = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }).map((h) => `sha256:${h}`);
const validArb = fc
  .record({
    registry: fc.option(registryArb, { nil: undefined }),
    path: fc.array(pathComponent, { minLength: 1, maxLength: 4 }),
    tag: fc.option(tagArb, { nil: undefined }),
    digest: fc.option(digestArb, { nil: undefined }),
  })
  // Without a registry, a first component with a dot (or localhost) followed by more would be read as one, as Docker reads it.
  .filter((v) => v.registry !== undefined || v.path.length === 1 || !(v.path[0]?.includes('.') || v.path[0] === 'localhost'));
type Valid = typeof validArb extends fc.Arbitrary<infer T> ? T : never;
const text = (v: Valid) =>
  `${v.registry ? `${v.registry}/` : ''}${v.path.join('/')}${v.tag ? `:${v.tag}` : ''}${v.digest ? `@${v.digest}` : ''}`;

/** Characters references are made of, and a few they must not hold. */
const refChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'abz09AZ./:@_-+=') },
  { weight: 1, arbitrary: fc.constantFrom(' ', '\t', '\n', '#', '?', '%', '\\', '\u0000', 'é', '[', ']') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);

describe('parseReference under random input', () => {
  it('returns a well-formed reference or throws its invalidArgument VmboxError, for any string', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: refChar, maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 60 })), (input) => {
        const r = parseOrRefuse(input);
        if (r) assertWellFormed(input, r);
      }),
      fuzzParams(2000),
    );
  });

  it('parses generated references as Docker does, and they read back', () => {
    fc.assert(
      fc.property(validArb, (v) => {
        const r = parseReference(text(v));
        const docker = v.registry === undefined || ['docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(v.registry);
        assert.equal(r.registry, docker ? 'docker.io' : v.registry);
        assert.equal(r.repository, docker && v.path.length === 1 ? `library/${v.path[0]}` : v.path.join('/'));
        assert.equal(r.tag, v.tag ?? (v.digest ? undefined : 'latest'));
        assert.equal(r.digest, v.digest);
        assertWellFormed(text(v), r);
      }),
      fuzzParams(1000),
    );
  });

  it('returns a well-formed reference or its own error for mutated valid references', () => {
    fc.assert(
      fc.property(validArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (v, edits) => {
        const input = mutate(Buffer.from(text(v)), edits).toString();
        const r = parseOrRefuse(input);
        if (r) assertWellFormed(input, r);
      }),
      fuzzParams(2000),
    );
  });

  it('answers long hostile input in linear time (no backtracking blow-up)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('a', 'a-', 'a.', 'a_', 'a__', '0', 'a:', 'a/'),
        fc.constantFrom('', '!', ':', '@sha256:x', 'A'),
        (unit, tail) => {
          const input = unit.repeat(20_000) + tail;
          parseOrRefuse(input);
          parseOrRefuse(`x.io/${input}`);
          parseOrRefuse(`alpine@sha256:${input}`);
        },
      ),
      fuzzParams(40),
    );
  });
});
