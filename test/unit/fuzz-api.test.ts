import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { VmboxError } from '../../src/errors.js';
import { ImageService } from '../../src/runtime/images.js';
import { SandboxManager } from '../../src/runtime/manager.js';
import { type SandboxRecord, StateDb } from '../../src/runtime/state.js';
import { buildApp } from '../../src/server/app.js';
import type { VmmProvider } from '../../src/vmm/provider.js';
import { fuzzParams } from '../fixtures/fuzz.js';

/**
 * The API of a server whose runtime cannot boot, fed random JSON. Its home's
 * `cache` is a file, so nothing that would build the kernel, the agent or an
 * image can start; the runtime's entries into a VM (boot, a template's key, a
 * snapshot of the kernel in use) fail with vmbox's own errors, and images are
 * never pulled: no VM, no network, no build.
 */
const home = mkdtempSync(join(tmpdir(), 'vmbox-fuzz-api-'));
const previousHome = process.env.VMBOX_HOME;
process.env.VMBOX_HOME = home;
writeFileSync(join(home, 'cache'), 'a file, so no asset is ever built in this home\n');

const cannot = (what: string) => new VmboxError('bootFailed', `this test's runtime cannot ${what}`);
const provider: VmmProvider = {
  name: 'unbootable',
  start: async () => {
    throw cannot('start a VM');
  },
  adopt: () => undefined,
};

/** The image service with every way to an image's disk closed. */
class NoImages extends ImageService {
  override async resolve(name: string): Promise<never> {
    throw new VmboxError('imageNotFound', `image ${name}: this test's server has no images`);
  }
  override async pull(): Promise<never> {
    throw new VmboxError('imageNotFound', "this test's server pulls nothing");
  }
  override async import(): Promise<never> {
    throw new VmboxError('invalidArgument', "this test's server imports nothing");
  }
}

/** A stopped sandbox for the routes that name one, so they get past "not found". */
const SANDBOX: SandboxRecord = {
  id: 'fuzz0000fuzz0000',
  name: 'fz',
  spec: { image: 'base', cpus: 1, memoryMib: 128, env: {}, name: 'fz' },
  image: {
    name: 'base',
    rootfsPath: '/nonexistent/rootfs.ext4',
    config: { env: [], workingDir: '/', user: 'root', entrypoint: [], cmd: [] },
  },
  state: 'stopped',
  reason: null,
  pid: null,
  createdAt: 0,
  startedAt: null,
  stoppedAt: null,
  removing: false,
  owner: null,
  origin: { start: 'cold' },
  apiKey: null,
};

interface Route {
  method: 'POST' | 'PUT' | 'PATCH';
  url: string;
}

/** Every route that takes a body, from the router's own listing (parents' paths prefix their children's). */
function bodyRoutes(app: FastifyInstance): Route[] {
  const out: Route[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = (m[1] as string).length / 4;
    stack.length = depth;
    stack.push(m[2] as string);
    const url = stack.join('');
    // Connect's RPC routes (envd's `service.Service/Method`) are registered for every method but take POST only.
    const rpc = isRpc(url);
    for (const method of (m[3] ?? '').split(', ')) {
      if (method === 'POST' || (!rpc && (method === 'PUT' || method === 'PATCH'))) out.push({ method, url });
    }
  }
  return out;
}

type Schema = {
  $ref?: string;
  required?: string[];
  type?: string | string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  patternProperties?: Record<string, Schema>;
  items?: Schema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  pattern?: string;
};

/** Values shaped by a JSON schema, a field now and then replaced by anything at all or an unknown one added. */
function shapedBy(s: Schema, refs: Record<string, Schema>, depth = 0): fc.Arbitrary<unknown> {
  const any = fc.jsonValue({ maxDepth: 1 });
  if (depth > 4) return any;
  const sub = (x: Schema) => shapedBy(x, refs, depth + 1);
  let valid: fc.Arbitrary<unknown>;
  if (s.$ref) valid = sub(refs[s.$ref.replace(/^#\/components\/schemas\//, '')] ?? {});
  else if (s.enum) valid = fc.constantFrom(...s.enum);
  else if ('const' in s) valid = fc.constant(s.const);
  else if (s.anyOf || s.oneOf) valid = fc.oneof(...((s.anyOf ?? s.oneOf) as Schema[]).map(sub));
  else if (s.allOf) valid = fc.tuple(...s.allOf.map(sub)).map((parts) => Object.assign({}, ...parts.filter((p) => typeof p === 'object')));
  else {
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    switch (type) {
      case 'object': {
        // A few fields at a time (a spec has dozens), the required ones mostly there.
        const entries = Object.entries(s.properties ?? {});
        const required = new Set(s.required ?? []);
        const props = fc
          .tuple(
            fc
              .constant(entries.filter(([k]) => !required.has(k)))
              .chain((optional) => fc.subarray(optional, { maxLength: Math.min(4, optional.length) })),
            fc.nat(9),
          )
          .chain(([chosen, drop]) =>
            fc.record(
              Object.fromEntries([...entries.filter(([k]) => required.has(k) && drop > 0), ...chosen].map(([k, v]) => [k, sub(v)])),
            ),
          );
        const extra = typeof s.additionalProperties === 'object' ? s.additionalProperties : Object.values(s.patternProperties ?? {})[0];
        const more = extra ? fc.dictionary(fc.string({ maxLength: 12 }), sub(extra), { maxKeys: 3 }) : fc.constant({});
        valid = fc
          .tuple(props, more, fc.nat(4), fc.string({ maxLength: 8 }))
          .map(([p, m, unknown, key]) => ({ ...m, ...p, ...(unknown === 0 ? { [`x${key}`]: 1 } : {}) }));
        break;
      }
      case 'array':
        valid = fc.array(sub(s.items ?? {}), { maxLength: 3 });
        break;
      case 'string': {
        const pattern = s.pattern ? safeStringMatching(s.pattern) : undefined;
        valid = fc.oneof(
          fc.string({ maxLength: s.maxLength ?? 30 }),
          fc.constantFrom('', '/', '../x', '/etc/passwd', 'base', 'a'.repeat(300), 'fz'),
          ...(pattern ? [pattern] : []),
        );
        break;
      }
      case 'integer':
      case 'number': {
        const min = s.minimum ?? -1000;
        const max = s.maximum ?? 1_000_000;
        valid = fc.oneof(
          fc.integer({ min: Math.max(min, -(2 ** 31)), max: Math.min(max, 2 ** 31) }),
          fc.constantFrom(min - 1, max + 1, 0, -1, 2 ** 53, 0.5),
        );
        break;
      }
      case 'boolean':
        valid = fc.boolean();
        break;
      case 'null':
        valid = fc.constant(null);
        break;
      default:
        valid = any;
    }
  }
  return fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: any });
}

function safeStringMatching(pattern: string): fc.Arbitrary<string> | undefined {
  try {
    return fc.stringMatching(new RegExp(pattern));
  } catch {
    return undefined;
  }
}

/** Route parameters: the sandbox above, and names that exist nowhere or are odd. */
const paramArb = (name: string) => {
  if (name === 'pid' || name === 'hostPort') return fc.constantFrom('1', '80', '0', '65536', 'x', '-1');
  if (name === 'key') return fc.constantFrom('0123456789abcdef', 'x');
  return fc.constantFrom('fz', SANDBOX.id, 'nope', '%2e%2e', 'a%20b', 'base', `${'a'.repeat(200)}`);
};

/** A body as it goes on the wire. */
const payloadArb = (shaped?: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.jsonValue().map((v) => ({ type: 'application/json', payload: JSON.stringify(v) ?? 'null' })) },
    ...(shaped ? [{ weight: 8, arbitrary: shaped.map((v) => ({ type: 'application/json', payload: JSON.stringify(v) ?? 'null' })) }] : []),
    {
      weight: 1,
      arbitrary: fc
        .oneof(fc.constantFrom('', '{', '{"a":', 'nul', '[1,]', '\u0000', '{"__proto__": {"x": 1}}'), fc.string({ maxLength: 40 }))
        .map((payload) => ({
          type: 'application/json',
          payload,
        })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom('text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded'), fc.string({ maxLength: 40 }))
        .map(([type, payload]) => ({
          type,
          payload,
        })),
    },
  );

/** E2B's routes have no schema of their own: their bodies as E2B's SDKs send them (control-plane.ts, shapes.ts). */
const str = { type: 'string' };
const int = { type: 'integer', minimum: 1 };
const bool = { type: 'boolean' };
const e2bNetwork: Record<string, Schema> = {
  allow_internet_access: bool,
  network: { type: 'object', properties: { allowOut: { type: 'array', items: str }, denyOut: { type: 'array', items: str } } },
};
const E2B_SCHEMAS: Record<string, Schema> = {
  'POST /sandboxes': {
    type: 'object',
    properties: {
      templateID: { type: 'string', enum: ['base', 'fz', 'nope', ''] },
      timeout: int,
      metadata: { type: 'object', additionalProperties: str },
      envVars: { type: 'object', additionalProperties: str },
      secure: bool,
      autoPause: bool,
      autoPauseMemory: bool,
      autoResume: { type: 'object', properties: { enabled: bool } },
      volumeMounts: { type: 'array', items: { type: 'object', properties: { name: str, path: str } } },
      ...e2bNetwork,
    },
  },
  'POST /sandboxes/:id/timeout': { type: 'object', properties: { timeout: int } },
  'POST /sandboxes/:id/connect': { type: 'object', properties: { timeout: int } },
  'PUT /sandboxes/:id/network': { type: 'object', properties: e2bNetwork },
  'POST /sandboxes/:id/refreshes': { type: 'object', properties: { duration: int } },
  'POST /sandboxes/:id/fork': { type: 'object', properties: { timeout: int, count: int } },
  'POST /sandboxes/:id/snapshots': { type: 'object', properties: { name: str } },
};
E2B_SCHEMAS['POST /v2/sandboxes'] = E2B_SCHEMAS['POST /sandboxes'] as Schema;

/** E2B's routes answer errors in E2B's shape, not vmbox's. */
const isE2b = (url: string) => !url.startsWith('/v1/');
const isRpc = (url: string) => /^\/\w+\.\w+\/\w+$/.test(url);

describe('the HTTP API under random bodies', () => {
  let app: FastifyInstance;
  let db: StateDb;
  let manager: SandboxManager;
  let routes: Route[] = [];
  const schemas = new Map<string, Schema>();
  let refs: Record<string, Schema> = {};
  let apiKey = '';

  before(async () => {
    db = new StateDb(join(home, 'state.db'));
    const images = new NoImages(db);
    manager = new SandboxManager({ db, provider, images });
    // The runtime's own ways into a VM or its assets, closed with vmbox's errors.
    manager.bootInto = async () => {
      throw cannot('boot');
    };
    manager.templates.key = async () => {
      throw cannot('find the kernel a template needs');
    };
    manager.snapshots.create = async () => {
      throw cannot('name the kernel a snapshot needs');
    };
    // Disk volumes and quotas are ext4 images the host formats and loop-mounts: not made here.
    const createVolume = manager.volumes.create.bind(manager.volumes);
    manager.volumes.create = (req) => {
      if (req.kind === 'disk' || req.quotaMib !== undefined) throw cannot('format or mount a disk');
      return createVolume(req);
    };
    ({ app } = await buildApp(manager, images, { e2bSecret: Buffer.alloc(32, 7), logLevel: 'silent' }));
    await app.listen({ path: join(home, 'api.sock') });
    routes = bodyRoutes(app);
    const doc = app.swagger() as {
      paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema: Schema }> } }>>;
      components?: { schemas?: Record<string, Schema> };
    };
    refs = doc.components?.schemas ?? {};
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const schema = op.requestBody?.content?.['application/json']?.schema;
        if (schema) schemas.set(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`, schema);
      }
    }
    for (const [route, schema] of Object.entries(E2B_SCHEMAS)) schemas.set(route, schema);
    const key = await send('POST', '/v1/api-keys', { type: 'application/json', payload: '{"name": "fuzz", "admin": true}' });
    apiKey = (JSON.parse(key.body) as { key: string }).key;
  });
  after(async () => {
    await app?.close();
    manager?.close();
    db?.close();
    rmSync(home, { recursive: true, force: true });
    if (previousHome === undefined) delete process.env.VMBOX_HOME;
    else process.env.VMBOX_HOME = previousHome;
  });

  it('finds the routes that take a body', () => {
    const names = routes.map((r) => `${r.method} ${r.url}`);
    for (const r of [
      'POST /v1/sandboxes',
      'PUT /v1/sandboxes/:ref/network',
      'POST /v1/volumes',
      'POST /v1/images/pull',
      'POST /sandboxes',
    ]) {
      assert.ok(names.includes(r), `${r} is not among ${names.join(', ')}`);
    }
    assert.ok(schemas.has('POST /v1/sandboxes'), 'the create schema, from /openapi.json');
  });

  /** One request over the server's unix socket, as clients send them (real parsing, a real end of the body). */
  function send(method: string, path: string, body: { type: string; payload: string }): Promise<{ statusCode: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: join(home, 'api.sock'),
          method,
          path,
          headers: { 'content-type': body.type, 'x-api-key': apiKey, host: 'localhost' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body.payload);
    });
  }

  /** Sends one request and checks the answer: a success, or an error in the API's shape that is not an unforeseen one. */
  async function check(route: Route, params: Record<string, string>, body: { type: string; payload: string }): Promise<void> {
    if (!db.get(SANDBOX.id)) db.insert(SANDBOX); // a route may have removed it
    const url = route.url.replace(/:(\w+)/g, (_, p: string) => params[p] ?? 'x');
    const res = await send(route.method, url, body);
    const what = `${route.method} ${url} (${body.type}) ${body.payload.slice(0, 300)} → ${res.statusCode} ${res.body.slice(0, 500)}`;
    if (res.statusCode < 400) return;
    // Connect's protocol answers a streaming call with the wrong content type by a bare 415.
    if (isRpc(route.url) && res.statusCode === 415 && res.body === '') return;
    let err: { code?: unknown; message?: unknown; field?: unknown };
    try {
      err = JSON.parse(res.body);
    } catch {
      assert.fail(`${what}: an error that is not JSON`);
    }
    assert.equal(typeof err.message, 'string', `${what}: no message`);
    assert.ok((err.message as string).length > 0, `${what}: an empty message`);
    assert.doesNotMatch(err.message as string, /\n\s+at /, `${what}: a stack trace`);
    // A server error is only this test's runtime refusing to boot (or build, or pull).
    if (res.statusCode >= 500) assert.match(err.message as string, /this test's/, `${what}: a server error`);
    // E2B's own shape ({code: status, message}), or Connect's ({code: "not_found", …}) on envd's routes.
    if (isE2b(route.url)) return;
    assert.equal(typeof err.code, 'string', `${what}: no code`);
    assert.notEqual(err.code, 'internal', `${what}: an unforeseen error`);
    if (typeof err.field === 'string') {
      assert.ok(res.statusCode === 400, `${what}: a field's error that is not a 400`);
      assert.ok((err.message as string).startsWith(err.field), `${what}: the message does not start with its field`);
    }
  }

  it('answers every route with a success or an error of its own shape, never an unforeseen one or a crash', async () => {
    // Each route once with the plainest bodies, then random ones.
    for (const route of routes) {
      for (const payload of ['null', '[]', '{}', '"x"', '1', '{"unknownField": 1}']) {
        await check(route, { ref: 'fz', id: 'fz', name: 'fz' }, { type: 'application/json', payload });
      }
    }
    const requestArb = fc.constantFrom(...routes).chain((route) => {
      const names = [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1] as string);
      const schema = schemas.get(`${route.method} ${route.url}`);
      return fc.tuple(
        fc.constant(route),
        fc.record(Object.fromEntries(names.map((n) => [n, paramArb(n)]))) as fc.Arbitrary<Record<string, string>>,
        payloadArb(schema ? shapedBy(schema, refs) : undefined),
      );
    });
    await fc.assert(
      fc.asyncProperty(requestArb, async ([route, params, body]) => check(route, params, body)),
      fuzzParams(600),
    );
  });

  it('answers schema-shaped bodies on the routes with a schema the same way', async () => {
    const withSchema = routes.filter((r) => schemas.has(`${r.method} ${r.url}`));
    const requestArb = fc.constantFrom(...withSchema).chain((route) =>
      fc.tuple(
        fc.constant(route),
        shapedBy(schemas.get(`${route.method} ${route.url}`) as Schema, refs).map((v) => ({
          type: 'application/json',
          payload: JSON.stringify(v) ?? 'null',
        })),
      ),
    );
    await fc.assert(
      fc.asyncProperty(requestArb, async ([route, body]) => check(route, { ref: 'fz', id: 'fz', name: 'fz' }, body)),
      fuzzParams(600),
    );
  });
});
