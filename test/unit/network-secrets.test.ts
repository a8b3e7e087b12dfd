import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';

import { SpecError, VmboxError } from '../../src/errors.js';
import { SandboxCa } from '../../src/network/ca.js';
import { type InterceptOptions, interceptTls } from '../../src/network/intercept-tls.js';
import { looksLikeHttp, proxyPlainHttp } from '../../src/network/plain-http.js';
import type { SecretEvent } from '../../src/network/secret-forward.js';
import { checkRequest } from '../../src/network/secret-request.js';
import { makePlaceholder, SecretSet } from '../../src/network/secrets.js';
import { startGuestSide, startUpstream, type Upstream } from '../fixtures/secret-proxy.js';

const run = promisify(execFile);
const VALUE = 'sk-live-0123456789abcdef0123456789abcdef';
const OTHER = 'ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const specs = [
  { name: 'API_KEY', value: VALUE, hosts: ['api.test'] },
  { name: 'GH_TOKEN', value: OTHER, hosts: ['*.other.test'] },
];

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  /** Body bytes read, kept or not. */
  length: number;
}

/** A guest's HTTPS client: trusts only the sandbox CA, keeps one connection, records every byte it reads. */
function guestClient(port: number, ca: string, opts: { servername?: string; record?: boolean } = {}) {
  const received: Buffer[] = [];
  let connections = 0;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  agent.createConnection = () => {
    connections++;
    const s = tls.connect({ host: '127.0.0.1', port, servername: opts.servername ?? 'api.test', ca });
    if (opts.record !== false) s.on('data', (d: Buffer) => received.push(d));
    return s;
  };
  return {
    received: () => Buffer.concat(received).toString('latin1'),
    connections: () => connections,
    close: () => agent.destroy(),
    send: (path: string, o: { method?: string; headers?: Record<string, string>; body?: Readable | Buffer; keep?: boolean } = {}) =>
      send(
        https.request({ agent, host: opts.servername ?? 'api.test', port, path, method: o.method ?? 'GET', headers: o.headers }),
        o.body,
        o.keep,
      ),
  };
}

/** Sends a request and reads the reply; `keep: false` counts the body without keeping it. */
function send(req: http.ClientRequest, body?: Readable | Buffer, keep = true): Promise<Reply> {
  return new Promise((resolve, reject) => {
    req.on('error', reject);
    req.on('response', async (res) => {
      const chunks: Buffer[] = [];
      let length = 0;
      for await (const c of res as AsyncIterable<Buffer>) {
        length += c.length;
        if (keep) chunks.push(c);
      }
      resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks), length });
    });
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

const header = (rawHeaders: string[], name: string) => rawHeaders[rawHeaders.findIndex((h) => h.toLowerCase() === name) + 1];

describe('SandboxCa', () => {
  it('issues leaves that chain to it, per name, and reloads from its saved state', async () => {
    const ca = await SandboxCa.create();
    const leaf = await ca.leafFor('API.test.');
    assert.equal(await ca.leafFor('api.test'), leaf, 'a leaf is kept per name');
    const caCert = new X509Certificate(ca.certificatePem);
    const cert = new X509Certificate(leaf.cert);
    assert.ok(cert.checkIssued(caCert) && cert.verify(caCert.publicKey));
    assert.equal(cert.subjectAltName, 'DNS:api.test');
    assert.ok(cert.checkHost('api.test') && !cert.checkHost('other.test'));
    assert.ok(caCert.ca && !cert.ca);
    assert.ok(Date.parse(cert.validFrom) < Date.now() - 30 * 60_000, 'not-before lies in the past, for a guest clock behind');
    assert.ok(Date.parse(cert.validTo) <= Date.now() + 7 * 86_400_000);
    assert.equal(new X509Certificate((await ca.leafFor('10.1.2.3')).cert).subjectAltName, 'IP Address:10.1.2.3');
    await assert.rejects(ca.leafFor('bad name'), VmboxError);

    const state = JSON.parse(JSON.stringify(ca));
    assert.match(state.key, /^-----BEGIN PRIVATE KEY-----/);
    const again = await SandboxCa.fromJSON(state);
    assert.equal(again.certificatePem, ca.certificatePem);
    assert.ok(new X509Certificate((await again.leafFor('api.test')).cert).verify(caCert.publicKey));
    const stranger = await SandboxCa.create();
    await assert.rejects(SandboxCa.fromJSON({ key: state.key, cert: stranger.certificatePem }), /does not match/);
  });

  it("passes OpenSSL's strict checks (what Python 3.13 asks by default)", async (t) => {
    const ca = await SandboxCa.create();
    const dir = mkdtempSync(join(tmpdir(), 'vmbox-ca-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'ca.pem'), ca.certificatePem);
    for (const name of ['api.test', '10.1.2.3', `${'a'.repeat(60)}.${'b'.repeat(60)}.test`]) {
      writeFileSync(join(dir, 'leaf.pem'), (await ca.leafFor(name)).cert);
      const { stdout } = await run('openssl', [
        'verify',
        '-x509_strict',
        '-purpose',
        'sslserver',
        '-CAfile',
        join(dir, 'ca.pem'),
        join(dir, 'leaf.pem'),
      ]);
      assert.match(stdout, /: OK/);
    }
  });
});

describe('SecretSet', () => {
  it('gives placeholders, keeps saved ones, and matches hosts', () => {
    const set = SecretSet.create(specs);
    const env = set.placeholderEnv();
    assert.match(env.API_KEY ?? '', /^vmbox-secret-API_KEY-[0-9a-f]{32}$/);
    assert.notEqual(env.API_KEY, makePlaceholder('API_KEY'));
    assert.deepEqual(SecretSet.create(specs, env).placeholderEnv(), env);
    assert.deepEqual(JSON.parse(JSON.stringify(set)), { placeholders: env });
    assert.ok(!JSON.stringify(set).includes(VALUE) && !String(Object.values(set)).includes(VALUE));

    assert.deepEqual(
      set.forHost('API.Test.').map((s) => s.name),
      ['API_KEY'],
    );
    assert.deepEqual(
      set.forHost('x.y.other.test').map((s) => s.name),
      ['GH_TOKEN'],
    );
    assert.deepEqual(set.forHost('other.test'), [], 'a wildcard matches subdomains only');
    assert.deepEqual(set.forHost('api.test.evil'), []);
    const text = Buffer.from(`a ${env.GH_TOKEN} b ${env.API_KEY} c ${env.GH_TOKEN} ${makePlaceholder('API_KEY')}`);
    assert.deepEqual(
      set.findPlaceholders(text).map((s) => s.name),
      ['GH_TOKEN', 'API_KEY'],
    );
  });

  it('refuses specs it could not keep safe', () => {
    const bad = [
      { name: 'A-B', value: VALUE, hosts: ['a.test'] },
      { name: 'A', value: 'short', hosts: ['a.test'] },
      { name: 'A', value: `${VALUE}\r\nX: y`, hosts: ['a.test'] },
      { name: 'A', value: VALUE, hosts: [] },
      { name: 'A', value: VALUE, hosts: ['*.com'] },
      { name: 'A', value: VALUE, hosts: ['a test'] },
    ];
    for (const spec of bad) assert.throws(() => SecretSet.create([spec]), SpecError, JSON.stringify(spec));
    assert.throws(() => SecretSet.create([specs[0]!, specs[0]!]), /given twice/);
  });

  it('masks values in a stream, whatever the chunks cut', async () => {
    const set = SecretSet.create(specs);
    const text = `{"a":"${VALUE}","b":"${OTHER}${VALUE}"} and the end`;
    for (let cut = 1; cut < text.length; cut += 3) {
      const masker = set.masker();
      const out: Buffer[] = [];
      masker.on('data', (d: Buffer) => out.push(d));
      masker.write(text.slice(0, cut));
      masker.end(text.slice(cut));
      await new Promise((r) => masker.on('end', r));
      const got = Buffer.concat(out).toString();
      assert.equal(got.length, text.length);
      assert.equal(got, text.replaceAll(VALUE, '*'.repeat(VALUE.length)).replaceAll(OTHER, '*'.repeat(OTHER.length)));
    }
  });
});

describe('checkRequest', () => {
  const set = SecretSet.create(specs);
  const env = set.placeholderEnv();

  it('replaces in the request line and headers, Basic credentials included', () => {
    const basic = Buffer.from(`x-access-token:${env.API_KEY}`).toString('base64');
    const v = checkRequest(set, 'api.test', {
      method: 'GET',
      url: `/v1?key=${env.API_KEY}`,
      rawHeaders: ['Host', 'api.test:8443', 'Authorization', `Basic ${basic}`, 'X-Key', `${env.API_KEY}`],
    });
    assert.ok(v.ok);
    assert.equal(v.url, `/v1?key=${VALUE}`);
    assert.equal(Buffer.from(header(v.rawHeaders, 'authorization')?.split(' ')[1] ?? '', 'base64').toString(), `x-access-token:${VALUE}`);
    assert.equal(header(v.rawHeaders, 'x-key'), VALUE);
  });

  it("blocks another host's secret, and a request naming another host", () => {
    const wrong = checkRequest(set, 'api.test', { method: 'GET', url: '/', rawHeaders: ['Host', 'api.test', 'X', `${env.GH_TOKEN}`] });
    assert.deepEqual(wrong.ok ? [] : wrong.blocked.map((b) => b.secret), ['GH_TOKEN']);
    const fronted = checkRequest(set, 'api.test', { method: 'GET', url: '/', rawHeaders: ['Host', 'evil.test', 'X', `${env.API_KEY}`] });
    assert.ok(!fronted.ok && /names evil\.test/.test(fronted.blocked[0]?.reason ?? ''));
    const absolute = checkRequest(set, 'api.test', {
      method: 'GET',
      url: `http://evil.test/?k=${env.API_KEY}`,
      rawHeaders: ['Host', 'api.test'],
    });
    assert.ok(!absolute.ok);
    const none = checkRequest(set, 'evil.test', { method: 'GET', url: '/', rawHeaders: ['Host', 'api.test'] });
    assert.ok(none.ok && !none.replaced.length, 'a request without placeholders passes as it is');
  });
});

describe('interceptTls', () => {
  let upstream: Upstream;
  let ca: SandboxCa;
  let guestSide: { port: number; close(): Promise<void> };
  const secrets = SecretSet.create(specs);
  const env = secrets.placeholderEnv();
  const events: SecretEvent[] = [];
  /** A guest side whose connections go to interceptTls for api.test, with these options changed. */
  const intercepting = (change: Partial<InterceptOptions>) =>
    startGuestSide((guest) => {
      void interceptTls(guest, {
        serverName: 'api.test',
        upstream: { host: '127.0.0.1', port: upstream.port },
        ca,
        secrets,
        upstreamTls: { ca: upstream.ca },
        onEvent: (e) => events.push(e),
        ...change,
      });
    });

  before(async () => {
    upstream = await startUpstream();
    ca = await SandboxCa.create();
    guestSide = await intercepting({});
  });
  after(async () => {
    await guestSide.close();
    await upstream.close();
  });

  it('puts the value in the request upstream, and never in what the guest reads', async () => {
    const client = guestClient(guestSide.port, ca.certificatePem);
    try {
      const first = await client.send('/echo', { headers: { Authorization: `Bearer ${env.API_KEY}` } });
      const second = await client.send(`/again?key=${env.API_KEY}`, {
        method: 'POST',
        headers: { 'X-Key': env.API_KEY ?? '' },
        body: Buffer.from('{}'),
      });
      assert.equal(first.status, 200);
      assert.equal(second.status, 200);
      assert.equal(client.connections(), 1, 'both requests went over one kept-alive connection');
      const [a, b] = upstream.seen.slice(-2);
      assert.equal(header(a?.rawHeaders ?? [], 'authorization'), `Bearer ${VALUE}`);
      assert.equal(b?.url, `/again?key=${VALUE}`);
      assert.equal(header(b?.rawHeaders ?? [], 'x-key'), VALUE);
      assert.equal(header(b?.rawHeaders ?? [], 'accept-encoding'), 'identity');
      assert.ok(first.body.includes('*'.repeat(VALUE.length)), 'the echoed value comes back masked');
      assert.deepEqual(
        first.rawHeaders.filter((_, i, all) => all[i - 1] === 'Set-Cookie'),
        ['a=1', 'b=2'],
      );
      assert.ok(!client.received().includes(VALUE), 'the value is in no byte the guest read');
      assert.deepEqual(
        events.filter((e) => e.kind === 'replaced').map((e) => [e.secret, e.host]),
        [
          ['API_KEY', 'api.test'],
          ['API_KEY', 'api.test'],
        ],
      );
      assert.ok(!JSON.stringify(events).includes(VALUE));
    } finally {
      client.close();
    }
  });

  it('gives back placeholders in response headers and masks encoded bodies', async () => {
    const client = guestClient(guestSide.port, ca.certificatePem);
    try {
      const leak = await client.send('/leak', { headers: { Authorization: `Bearer ${env.API_KEY}` } });
      assert.equal(leak.status, 302);
      assert.equal(
        leak.headers.location,
        `/next?auth=Bearer ${env.API_KEY}`,
        'a redirect keeps working: its placeholder is replaced again',
      );
      const gz = await client.send('/gzip', { headers: { Authorization: `Bearer ${env.API_KEY}`, 'Accept-Encoding': 'gzip' } });
      assert.equal(gz.status, 200);
      assert.equal(gz.headers['content-encoding'], undefined);
      assert.match(gz.body.toString(), /Bearer \*{10}/);
      assert.ok(!client.received().includes(VALUE));
    } finally {
      client.close();
    }
  });

  it("blocks another host's placeholder with a 403, reports it, and keeps the connection", async () => {
    const client = guestClient(guestSide.port, ca.certificatePem);
    const before = upstream.seen.length;
    try {
      const blocked = await client.send('/echo', {
        method: 'POST',
        headers: { Authorization: `token ${env.GH_TOKEN}` },
        body: Buffer.alloc(100_000),
      });
      assert.equal(blocked.status, 403);
      assert.match(blocked.body.toString(), /secret GH_TOKEN may not be sent to api\.test/);
      assert.equal(upstream.seen.length, before, 'upstream never saw it');
      const last = events.at(-1);
      assert.deepEqual([last?.kind, last?.secret, last?.host], ['blocked', 'GH_TOKEN', 'api.test']);
      assert.equal((await client.send('/echo')).status, 200, 'the next request on the connection goes through');
      assert.equal(client.connections(), 1);
    } finally {
      client.close();
    }
  });

  it('passes a chunked body through as it came', async () => {
    const client = guestClient(guestSide.port, ca.certificatePem);
    try {
      const parts = ['first part, ', `${env.API_KEY} stays a placeholder in a body, `, 'last part'];
      const res = await client.send('/upload', { method: 'POST', body: Readable.from(parts.map((p) => Buffer.from(p))) });
      const got = upstream.seen.at(-1);
      assert.equal(header(got?.rawHeaders ?? [], 'transfer-encoding'), 'chunked');
      assert.equal(JSON.parse(res.body.toString()).bytes, Buffer.byteLength(parts.join('')));
      assert.equal(got?.sha256, createHash('sha256').update(parts.join('')).digest('hex'));
    } finally {
      client.close();
    }
  });

  it('streams 50 MiB each way with backpressure and bounded memory', async () => {
    const client = guestClient(guestSide.port, ca.certificatePem, { record: false });
    const size = 50 * 1024 * 1024;
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const base = used();
    let peak = base;
    // Collected first, so what is counted is what is held, not garbage not yet swept.
    const sampler = setInterval(() => {
      gc();
      peak = Math.max(peak, used());
    }, 25);
    let release!: () => void;
    upstream.stall = new Promise<void>((r) => {
      release = r;
    });
    try {
      let written = 0;
      const block = Buffer.alloc(64 * 1024, 7);
      const body = new Readable({
        read() {
          written += block.length;
          this.push(written > size ? null : block);
        },
      });
      const upload = client.send('/upload', { method: 'POST', headers: { 'Content-Length': String(size) }, body });
      // Upstream stops reading after a MiB: the guest must soon stop being able to send.
      let stalled = -1;
      for (let i = 0; i < 50 && written !== stalled; i++) {
        stalled = written;
        await new Promise((r) => setTimeout(r, 300));
      }
      assert.equal(written, stalled, 'the guest stops sending while upstream does not read');
      // Kernel socket buffers hold several MiB per hop; a proxy that buffered would take all 50.
      assert.ok(stalled < size / 2, `${stalled} bytes were taken`);
      release();
      const up = await upload;
      assert.equal(JSON.parse(up.body.toString()).bytes, size);

      const down = await client.send(`/download?bytes=${size}`, { keep: false });
      assert.equal(down.length, size);
      assert.equal(down.headers['content-length'], String(size));
      // A proxy that buffered would hold the 50 MiB; one that streams holds its TLS and socket buffers,
      // which reached 21.6 MiB once in a few runs with the other unit files loading the CPU (16 was too tight).
      assert.ok(peak - base < 32 * 1024 * 1024, `memory grew by ${((peak - base) / 1048576).toFixed(1)} MiB`);
    } finally {
      clearInterval(sampler);
      upstream.stall = undefined;
      client.close();
    }
  });

  it('joins an upgraded connection after checking its head', async () => {
    const sock = tls.connect({ host: '127.0.0.1', port: guestSide.port, servername: 'api.test', ca: ca.certificatePem });
    try {
      sock.write(
        `GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\nAuthorization: Bearer ${env.API_KEY}\r\n\r\n`,
      );
      let got = '';
      for await (const chunk of sock) {
        got += chunk.toString();
        if (got.includes('\r\n\r\n') && !got.includes('ping')) sock.write('ping');
        if (got.includes('ping')) break;
      }
      assert.match(got, /^HTTP\/1\.1 101 /);
      assert.equal(header(upstream.seen.at(-1)?.rawHeaders ?? [], 'authorization'), `Bearer ${VALUE}`);
    } finally {
      sock.destroy();
    }
  });

  it('refuses an upstream that cannot prove the name (502), sending it nothing', async () => {
    const side = await intercepting({ upstreamTls: undefined }); // the system's trust, which upstream's CA is not in
    const client = guestClient(side.port, ca.certificatePem);
    const before = upstream.seen.length;
    try {
      const res = await client.send('/echo', { headers: { Authorization: `Bearer ${env.API_KEY}` } });
      assert.equal(res.status, 502);
      assert.match(res.body.toString(), /certificate/);
      assert.equal(upstream.seen.length, before);
    } finally {
      client.close();
      await side.close();
    }
  });

  it('reports a guest that does not trust the sandbox CA', async () => {
    const errors: Error[] = [];
    const side = await intercepting({ onError: (e) => errors.push(e) });
    try {
      const client = guestClient(side.port, upstream.ca);
      await assert.rejects(client.send('/echo'), /certificate/);
      client.close();
      for (let i = 0; i < 50 && !errors.length; i++) await new Promise((r) => setTimeout(r, 20));
      assert.match(errors[0]?.message ?? '', /trust the sandbox's CA/);
    } finally {
      await side.close();
    }
  });

  it('is accepted by curl (OpenSSL) with the sandbox CA', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmbox-curl-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'ca.pem'), ca.certificatePem);
    const url = `https://api.test:${guestSide.port}/curl`;
    const { stdout } = await run('curl', [
      '-sS',
      '--fail',
      '--cacert',
      join(dir, 'ca.pem'),
      '--resolve',
      `api.test:${guestSide.port}:127.0.0.1`,
      '-H',
      `Authorization: Bearer ${env.API_KEY}`,
      url,
    ]);
    assert.equal(JSON.parse(stdout).url, '/curl');
    assert.ok(!stdout.includes(VALUE));
    assert.equal(header(upstream.seen.at(-1)?.rawHeaders ?? [], 'authorization'), `Bearer ${VALUE}`);
  });
});

describe('proxyPlainHttp', () => {
  it('replaces for the host the secret belongs to and blocks for any other', async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization ?? '');
      res.end(`got ${req.headers.authorization}`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const upstream = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
    const secrets = SecretSet.create(specs);
    const env = secrets.placeholderEnv();
    const events: SecretEvent[] = [];
    const sides = await Promise.all(
      ['api.test', 'elsewhere.test'].map((hostname) =>
        startGuestSide((guest) => void proxyPlainHttp(guest, { hostname, upstream, secrets, onEvent: (e) => events.push(e) })),
      ),
    );
    try {
      const ask = (port: number, host: string) =>
        send(
          http.request({
            host: '127.0.0.1',
            port,
            path: '/',
            headers: { Host: host, Authorization: `Bearer ${env.API_KEY}` },
            agent: false,
          }),
        );
      const right = await ask(sides[0]!.port, 'api.test');
      assert.equal(right.status, 200);
      assert.equal(seen.at(-1), `Bearer ${VALUE}`);
      assert.equal(right.body.toString(), `got Bearer ${'*'.repeat(VALUE.length)}`);
      const wrong = await ask(sides[1]!.port, 'api.test');
      assert.equal(wrong.status, 403);
      assert.equal(seen.length, 1);
      assert.deepEqual(
        events.map((e) => [e.kind, e.host]),
        [
          ['replaced', 'api.test'],
          ['blocked', 'elsewhere.test'],
        ],
      );
    } finally {
      for (const s of sides) await s.close();
      server.close();
    }
  });

  it('tells HTTP from other protocols by the first bytes', () => {
    assert.ok(looksLikeHttp(Buffer.from('GET / HTTP/1.1\r\n')));
    assert.ok(looksLikeHttp(Buffer.from('PROPFIND /x')));
    assert.ok(!looksLikeHttp(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])));
    assert.ok(!looksLikeHttp(Buffer.from('SSH-2.0-OpenSSH')));
  });
});
