import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import packet, { type RecordType } from 'dns-packet';
import { SpecError } from '../../src/errors.js';
import { HOST_ALIAS_ADDRESS } from '../../src/network/addresses.js';
import { DnsResolver } from '../../src/network/dns.js';
import { hostNameservers, parseUpstream } from '../../src/network/dns-upstream.js';
import { NameRecord } from '../../src/network/names.js';
import { compilePolicy } from '../../src/network/policy.js';
import type { NetworkPolicyInput } from '../../src/spec/network.js';
import { type DnsServerFixture, startDnsServer } from '../fixtures/dns-server.js';

const query = (name: string, type: RecordType = 'A', id = 4242) =>
  packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, class: 'IN', name }] });

describe('DnsResolver', () => {
  let server: DnsServerFixture;
  let names: NameRecord;
  const resolver = (p: NetworkPolicyInput, opts: { servers?: string[]; timeoutMs?: number; maxInFlight?: number } = {}) =>
    new DnsResolver({ policy: compilePolicy({ enabled: true, ...p }), names, servers: [server.address], timeoutMs: 1000, ...opts });
  const ask = async (r: DnsResolver, name: string, type: RecordType = 'A') => {
    const { response, decision } = await r.answer(query(name, type));
    assert.ok(response, 'an answer');
    const p = packet.decode(response) as ReturnType<typeof packet.decode> & { rcode: string };
    return { p, rcode: p.rcode, decision, data: (p.answers ?? []).map((a) => `${a.type} ${'data' in a ? String(a.data) : ''}`) };
  };

  before(async () => {
    server = await startDnsServer({
      a: {
        'pypi.test': ['203.0.113.10', '203.0.113.11'],
        'rebind.test': ['127.0.0.9'],
        'mixed.test': ['10.0.0.1', '203.0.113.5'],
        'cdn.test': ['203.0.113.20'],
        'x.tracker.test': ['203.0.113.30'],
        'dual.test': ['203.0.113.40'],
      },
      aaaa: { 'dual.test': ['2001:db8::1'] },
      cname: { 'www.test': 'cdn.test', 'site.test': 'x.tracker.test' },
    });
  });
  after(() => server.close());
  beforeEach(() => {
    names = new NameRecord();
    server.asked.length = 0;
    server.silent = false;
  });

  it('answers an allowed name from upstream, echoing the id and question, and records its addresses', async () => {
    const r = await ask(resolver({ allow: ['pypi.test'] }), 'PyPI.test');
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(r.p.id, 4242);
    assert.equal(r.p.questions?.[0]?.name, 'PyPI.test');
    assert.ok(r.p.flag_rd && r.p.flag_ra && r.p.flag_qr);
    assert.deepEqual(r.data, ['A 203.0.113.10', 'A 203.0.113.11']);
    assert.deepEqual(r.decision.addresses, ['203.0.113.10', '203.0.113.11']);
    assert.equal(r.decision.allowed, true);
    assert.equal(r.decision.reason, 'allowed by rule pypi.test');
    assert.deepEqual(names.namesFor('203.0.113.11'), ['pypi.test']);
    assert.deepEqual(server.asked, ['A pypi.test']);
  });

  it('answers a denied name NXDOMAIN without asking upstream', async () => {
    const r = await ask(resolver({ defaultAction: 'allow', deny: ['*.tracker.test'] }), 'x.tracker.test');
    assert.equal(r.rcode, 'NXDOMAIN');
    assert.equal(r.decision.allowed, false);
    assert.equal(r.decision.reason, 'denied by rule *.tracker.test');
    const unlisted = await ask(resolver({ allow: ['pypi.test'] }), 'secret-data.exfil.test');
    assert.equal(unlisted.rcode, 'NXDOMAIN');
    assert.match(unlisted.decision.reason, /default is deny/);
    assert.equal((await ask(resolver({}), 'pypi.test', 'AAAA')).rcode, 'NXDOMAIN');
    assert.equal(server.asked.length, 0, 'no refused name reached the upstream server');
  });

  it('refuses a rebinding answer into loopback under a default allow, but not for an allowed name', async () => {
    const open = await ask(resolver({ defaultAction: 'allow' }), 'rebind.test');
    assert.equal(open.rcode, 'NXDOMAIN');
    assert.equal(open.decision.allowed, false);
    assert.match(open.decision.reason, /^rebinding: rebind\.test resolved only to host-private addresses \(127\.0\.0\.9\)/);
    assert.deepEqual(names.namesFor('127.0.0.9'), []);
    const named = await ask(resolver({ allow: ['rebind.test'] }), 'rebind.test');
    assert.equal(named.rcode, 'NOERROR');
    assert.deepEqual(named.data, ['A 127.0.0.9']);
    assert.deepEqual(names.namesFor('127.0.0.9'), ['rebind.test']);
  });

  it('keeps the public addresses of a mixed answer', async () => {
    const r = await ask(resolver({ defaultAction: 'allow' }), 'mixed.test');
    assert.deepEqual(r.data, ['A 203.0.113.5']);
    assert.match(r.decision.reason, /dropped host-private 10\.0\.0\.1/);
  });

  it('answers AAAA and other types empty without asking upstream, and strips AAAA from A answers', async () => {
    const r = resolver({ allow: ['dual.test'] });
    for (const type of ['AAAA', 'TXT', 'MX'] as const) {
      const x = await ask(r, 'dual.test', type);
      assert.equal(x.rcode, 'NOERROR', type);
      assert.equal(x.p.answers?.length, 0, type);
    }
    assert.equal(server.asked.length, 0);
    const a = await ask(r, 'dual.test');
    assert.deepEqual(a.data, ['A 203.0.113.40']);
    assert.equal(a.p.additionals?.length, 0);
    assert.deepEqual(server.asked, ['A dual.test'], 'the upstream did send AAAA records along');
  });

  it('passes the CNAME chain on and records every name of it', async () => {
    const r = await ask(resolver({ defaultAction: 'allow' }), 'www.test');
    assert.deepEqual(r.data, ['CNAME cdn.test', 'A 203.0.113.20']);
    assert.deepEqual(names.namesFor('203.0.113.20'), ['www.test', 'cdn.test']);
  });

  it('answers NXDOMAIN when the name is an alias of a denied one', async () => {
    const r = await ask(resolver({ allow: ['site.test'], deny: ['*.tracker.test'] }), 'site.test');
    assert.equal(r.rcode, 'NXDOMAIN');
    assert.equal(r.decision.reason, 'site.test is an alias of x.tracker.test, denied by rule *.tracker.test');
    assert.deepEqual(names.namesFor('203.0.113.30'), []);
  });

  it('passes an upstream NXDOMAIN on', async () => {
    const r = await ask(resolver({ defaultAction: 'allow' }), 'nowhere.test');
    assert.equal(r.rcode, 'NXDOMAIN');
    assert.equal(r.decision.allowed, true, 'the policy allowed it; it does not exist');
  });

  it('answers SERVFAIL when upstream times out', async () => {
    server.silent = true;
    const r = await ask(resolver({ defaultAction: 'allow' }, { timeoutMs: 100 }), 'pypi.test');
    assert.equal(r.rcode, 'SERVFAIL');
    assert.match(r.decision.reason, /127\.0\.0\.1:\d+ did not answer within 100 ms/);
  });

  it('falls back to the next server when one does not answer', async () => {
    const dead = await startDnsServer();
    dead.silent = true;
    try {
      const r = await ask(resolver({ defaultAction: 'allow' }, { servers: [dead.address, server.address], timeoutMs: 100 }), 'pypi.test');
      assert.equal(r.rcode, 'NOERROR');
      assert.deepEqual(r.data, ['A 203.0.113.10', 'A 203.0.113.11']);
      assert.equal(dead.count('pypi.test'), 1);
    } finally {
      await dead.close();
    }
  });

  it('caps the queries upstream at once, answering SERVFAIL past the cap', async () => {
    server.silent = true;
    const r = resolver({ defaultAction: 'allow' }, { maxInFlight: 1, timeoutMs: 300 });
    const first = r.answer(query('pypi.test'));
    const second = await ask(r, 'cdn.test');
    assert.equal(second.rcode, 'SERVFAIL');
    assert.match(second.decision.reason, /1 DNS queries of this sandbox are already upstream/);
    assert.equal((await first).decision.rcode, 'SERVFAIL');
  });

  it('ends queries under way when closed', async () => {
    server.silent = true;
    const r = resolver({ defaultAction: 'allow' }, { timeoutMs: 10_000 });
    const pending = r.answer(query('pypi.test'));
    r.close();
    const { decision } = await pending;
    assert.equal(decision.rcode, 'SERVFAIL');
    assert.match(decision.reason, /closed/);
  });

  it('answers host.vmbox.internal with the alias address only when a rule allows it', async () => {
    const r = await ask(resolver({ allow: ['host.vmbox.internal:8080'] }), 'host.vmbox.internal');
    assert.deepEqual(r.data, [`A ${HOST_ALIAS_ADDRESS}`]);
    assert.equal((await ask(resolver({ defaultAction: 'allow' }), 'host.vmbox.internal')).rcode, 'NXDOMAIN');
    assert.equal(server.asked.length, 0);
  });

  it('applies a replaced policy to the next query', async () => {
    const r = resolver({ defaultAction: 'allow' });
    assert.equal((await ask(r, 'pypi.test')).rcode, 'NOERROR');
    r.policy = compilePolicy({ enabled: true, deny: ['pypi.test'] });
    assert.equal((await ask(r, 'pypi.test')).rcode, 'NXDOMAIN');
  });

  it('refuses a name that is not a host name without asking upstream', async () => {
    const r = await ask(resolver({ defaultAction: 'allow' }), 'a b.test');
    assert.equal(r.rcode, 'NXDOMAIN');
    assert.match(r.decision.reason, /not a host name/);
    assert.equal(server.asked.length, 0);
  });

  it('answers a malformed query FORMERR, or not at all, and never throws', async () => {
    const r = resolver({ defaultAction: 'allow' });
    assert.equal((await r.answer(Buffer.from([1, 2, 3]))).response, undefined);
    const garbage = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01]), Buffer.alloc(6), Buffer.from([0xc0, 0xff])]);
    const formerr = await r.answer(garbage);
    assert.ok(formerr.response);
    const p = packet.decode(formerr.response) as ReturnType<typeof packet.decode> & { rcode: string };
    assert.equal(p.id, 0x1234);
    assert.equal(p.rcode, 'FORMERR');
    const two = packet.encode({
      type: 'query',
      id: 7,
      questions: [
        { type: 'A', name: 'a.test' },
        { type: 'A', name: 'b.test' },
      ],
    });
    assert.equal((await r.answer(two)).decision.rcode, 'FORMERR');
    const response = packet.encode({ type: 'response', id: 7, questions: [{ type: 'A', name: 'a.test' }] });
    assert.equal((await r.answer(response)).response, undefined, 'a response is not answered');
    const status = query('a.test');
    status.writeUInt16BE(status.readUInt16BE(2) | (2 << 11), 2);
    assert.equal((await r.answer(status)).decision.rcode, 'NOTIMP');
    // Noise, then a valid query with bytes flipped: every answer that comes back carries the query's id.
    const valid = query('www.pypi.test', 'A', 0xbeef);
    for (let i = 0; i < 1500; i++) {
      const input = i < 500 ? randomBytes(i % 64) : Buffer.from(valid);
      if (i >= 500) for (let k = 0; k < 1 + (i % 4); k++) input[randomInt(input.length)] = randomInt(256);
      const { response } = await r.answer(input);
      if (response && input.length >= 12) assert.equal(response.readUInt16BE(0), input.readUInt16BE(0));
    }
  });
});

describe('DNS upstream servers', () => {
  it('reads the IPv4 nameservers of a resolv.conf', () => {
    const text = '# comment\nsearch lan\nnameserver 10.0.0.2\nnameserver fe80::1\n  nameserver 1.1.1.1 \noptions ndots:1\n';
    assert.deepEqual(hostNameservers(text), [
      { host: '10.0.0.2', port: 53 },
      { host: '1.1.1.1', port: 53 },
    ]);
  });

  it('parses IPv4[:port] and names the field of a bad one', () => {
    assert.deepEqual(parseUpstream('10.0.0.2:5353', 'f'), { host: '10.0.0.2', port: 5353 });
    assert.throws(
      () => new DnsResolver({ policy: compilePolicy({}), names: new NameRecord(), servers: ['1.1.1.1', '::1'] }),
      (err: unknown) => err instanceof SpecError && err.field === 'network.dnsServers[1]' && /no IPv6/.test(err.message),
    );
    assert.throws(() => parseUpstream('1.1.1.1:0', 'f'), /port 0/);
  });
});
