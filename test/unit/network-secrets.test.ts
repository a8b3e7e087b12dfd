import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

import { VmboxError } from '../../src/errors.js';
import { SandboxCa } from '../../src/network/ca.js';

const run = promisify(execFile);

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
