import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

import { SpecError, VmboxError } from '../../src/errors.js';
import { SandboxCa } from '../../src/network/ca.js';
import { checkRequest } from '../../src/network/secret-request.js';
import { makePlaceholder, SecretSet } from '../../src/network/secrets.js';

const run = promisify(execFile);
const VALUE = 'sk-live-0123456789abcdef0123456789abcdef';
const OTHER = 'ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const specs = [
  { name: 'API_KEY', value: VALUE, hosts: ['api.test'] },
  { name: 'GH_TOKEN', value: OTHER, hosts: ['*.other.test'] },
];

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
