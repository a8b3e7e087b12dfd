import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpecError } from '../../src/errors.js';
import {
  cidrContains,
  formatIPv4,
  HOST_ALIAS_ADDRESS,
  isPrivate,
  parseCidr,
  parseIPv4,
  specialRange,
  tryParseIPv4,
} from '../../src/network/addresses.js';
import { NameRecord } from '../../src/network/names.js';
import { compilePolicy } from '../../src/network/policy.js';
import type { NetworkPolicyInput } from '../../src/spec/network.js';

const policy = (p: NetworkPolicyInput) => compilePolicy({ enabled: true, ...p });
const connect = (p: NetworkPolicyInput, ip: string, port: number, names: string[] = []) => policy(p).decideConnect({ ip, port, names });

describe('IPv4 addresses', () => {
  it('parses strict dotted quads and formats them back', () => {
    assert.equal(parseIPv4('1.2.3.4'), 0x01020304);
    assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
    assert.equal(formatIPv4(parseIPv4('203.0.113.9')), '203.0.113.9');
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.4 ', '', 'a.b.c.d', '1..2.3']) {
      assert.equal(tryParseIPv4(bad), undefined, bad);
    }
  });

  it('rejects IPv6 saying the guest has no IPv6', () => {
    assert.throws(() => parseIPv4('::1'), /IPv6 address; a sandbox's guest has no IPv6/);
    assert.throws(() => parseIPv4('1.2.3.999'), /not an IPv4 address/);
  });

  it('matches CIDR blocks, /0 and /32 included', () => {
    const c = parseCidr('172.16.0.0/12');
    assert.ok(cidrContains(c, parseIPv4('172.31.255.255')));
    assert.ok(!cidrContains(c, parseIPv4('172.32.0.0')));
    assert.ok(cidrContains(parseCidr('0.0.0.0/0'), parseIPv4('8.8.8.8')));
    assert.ok(cidrContains(parseCidr('9.9.9.9'), parseIPv4('9.9.9.9')));
    assert.ok(!cidrContains(parseCidr('9.9.9.9/32'), parseIPv4('9.9.9.8')));
    assert.throws(() => parseCidr('10.0.0.1/8'), /did you mean 10\.0\.0\.0\/8/);
    assert.throws(() => parseCidr('10.0.0.0/33'), /0 to 32/);
  });

  it('classifies the special ranges', () => {
    const cases: [string, string | undefined][] = [
      ['127.0.0.5', 'loopback'],
      ['0.0.0.0', '"this network"; 0.0.0.0 reaches the host itself'],
      ['10.200.0.1', 'private network'],
      ['172.20.1.1', 'private network'],
      ['192.168.1.1', 'private network'],
      ['169.254.169.254', 'link-local, cloud metadata'],
      ['169.254.3.4', 'link-local'],
      ['100.100.100.200', 'carrier-grade NAT'],
      ['192.0.0.170', 'IETF protocol assignments'],
      ['198.19.0.1', 'benchmarking'],
      ['239.1.1.1', 'multicast'],
      ['250.1.1.1', 'reserved'],
      ['255.255.255.255', 'broadcast'],
      ['8.8.8.8', undefined],
      ['172.32.0.1', undefined],
      ['100.128.0.1', undefined],
      ['198.20.0.1', undefined],
    ];
    for (const [ip, label] of cases) assert.equal(specialRange(parseIPv4(ip)), label, ip);
    assert.ok(isPrivate('10.0.0.1'));
    assert.ok(!isPrivate('93.184.216.34'));
    assert.ok(isPrivate('::1'), 'what is not IPv4 counts as private');
  });
});

describe('policy rules', () => {
  const fails = (p: NetworkPolicyInput, field: string, pattern: RegExp) =>
    assert.throws(
      () => policy(p),
      (err: unknown) =>
        err instanceof SpecError && err.field === field && pattern.test(err.message) && /a rule looks like/.test(err.message),
    );

  it('names the field and says what is wrong with a malformed rule', () => {
    fails({ allow: ['pypi.org', 'x.org', 'a.org:0'] }, 'network.allow[2]', /port 0; ports are 1 to 65535/);
    fails({ allow: ['a.org:70000'] }, 'network.allow[0]', /port 70000/);
    fails({ deny: ['a.org:90-80'] }, 'network.deny[0]', /runs backwards; write 80-90/);
    fails({ allow: ['a.org:http'] }, 'network.allow[0]', /one port \(443\) or a range/);
    fails({ allow: ['10.0.0.0/40'] }, 'network.allow[0]', /prefix length \/40; it must be 0 to 32/);
    fails({ allow: ['10.0.0.1/8'] }, 'network.allow[0]', /did you mean 10\.0\.0\.0\/8/);
    fails({ allow: ['300.1.1.1'] }, 'network.allow[0]', /not a valid IPv4 address/);
    fails({ allow: ['fe80::1'] }, 'network.allow[0]', /IPv6/);
    fails({ allow: ['foo*.org'] }, 'network.allow[0]', /leading "\*\."/);
    fails({ allow: ['*'] }, 'network.allow[0]', /leading "\*\."/);
    fails({ allow: ['-a.org'] }, 'network.allow[0]', /label "-a"/);
    fails({ allow: ['a..org'] }, 'network.allow[0]', /label ""/);
    fails({ allow: [':443'] }, 'network.allow[0]', /no target/);
    fails({ allow: ['a.org/24'] }, 'network.allow[0]', /has a "\/"/);
  });

  it('accepts every documented form', () => {
    const p = policy({ allow: ['PyPI.org.', '*.pythonhosted.org:443', '10.1.2.3', '10.0.0.0/8:5432', 'host.vmbox.internal:8000-8999'] });
    assert.equal(p.decideName('pypi.org').action, 'resolve');
  });
});

describe('decideName', () => {
  it('resolves a name an allow rule covers, whatever its ports, trusting it with private answers', () => {
    const d = policy({ allow: ['pypi.org:443'] }).decideName('PyPI.org.');
    assert.deepEqual(d, { action: 'resolve', reason: 'allowed by rule pypi.org:443', privateOk: true, by: 'allow', rule: 'pypi.org:443' });
  });

  it('matches a wildcard below its base at any depth, never the base itself', () => {
    const p = policy({ allow: ['*.example.test'] });
    assert.equal(p.decideName('a.example.test').action, 'resolve');
    assert.equal(p.decideName('a.b.c.example.test').action, 'resolve');
    assert.equal(p.decideName('example.test').action, 'refuse');
    assert.equal(p.decideName('badexample.test').action, 'refuse');
  });

  it('refuses a denied name even when an allow rule also covers it', () => {
    const d = policy({ allow: ['*.evil.test'], deny: ['*.evil.test'], defaultAction: 'allow' }).decideName('x.evil.test');
    assert.equal(d.action, 'refuse');
    assert.equal(d.reason, 'denied by rule *.evil.test');
  });

  it('lets a name resolve when its deny rule covers only some ports', () => {
    assert.equal(policy({ allow: ['mail.test'], deny: ['mail.test:25'] }).decideName('mail.test').action, 'resolve');
  });

  it('resolves anything else under a default allow, but without private answers', () => {
    const d = policy({ defaultAction: 'allow' }).decideName('anything.test');
    assert.equal(d.action, 'resolve');
    assert.equal(d.privateOk, false);
  });

  it('refuses anything else under a default deny, saying so', () => {
    const d = policy({}).decideName('exfil.data.test');
    assert.equal(d.action, 'refuse');
    assert.equal(d.reason, 'no rule allows the name exfil.data.test and the default is deny');
  });

  it('answers host.vmbox.internal only when a rule names it; a wildcard or the default does not', () => {
    assert.equal(policy({ allow: ['host.vmbox.internal:8080'] }).decideName('host.vmbox.internal').by, 'alias');
    assert.equal(policy({ allow: ['host.vmbox.internal:8080'] }).decideName('host.vmbox.internal').action, 'resolve');
    assert.equal(policy({ allow: ['*.vmbox.internal'], defaultAction: 'allow' }).decideName('host.vmbox.internal').action, 'refuse');
    assert.equal(
      policy({ allow: ['host.vmbox.internal'], deny: ['host.vmbox.internal'] }).decideName('host.vmbox.internal').action,
      'refuse',
    );
  });

  it('refuses everything when the network is not enabled', () => {
    const p = compilePolicy({ defaultAction: 'allow', allow: ['a.test'] });
    assert.equal(p.decideName('a.test').action, 'refuse');
    assert.equal(p.decideConnect({ ip: '1.2.3.4', port: 443 }).allowed, false);
  });
});

describe('decideConnect', () => {
  it('allows a name rule on its port only, and dials the address', () => {
    const p = { allow: ['pypi.org:443'] };
    const d = connect(p, '151.101.0.223', 443, ['pypi.org']);
    assert.equal(d.allowed, true);
    assert.equal(d.rule, 'pypi.org:443');
    assert.deepEqual(d.dial, { host: '151.101.0.223', port: 443 });
    assert.equal(d.nameBound, true);
    const other = connect(p, '151.101.0.223', 80, ['pypi.org']);
    assert.equal(other.allowed, false);
    assert.equal(other.reason, 'no rule allows 151.101.0.223:80 (resolved from pypi.org) and the default is deny');
  });

  it('allows by CIDR and port range, refusing just outside them', () => {
    const p = { allow: ['203.0.113.0/24:8000-8999'] };
    assert.equal(connect(p, '203.0.113.77', 8000).allowed, true);
    assert.equal(connect(p, '203.0.113.77', 8999).allowed, true);
    assert.equal(connect(p, '203.0.113.77', 9000).allowed, false);
    assert.equal(connect(p, '203.0.114.1', 8500).allowed, false);
    assert.equal(connect(p, '203.0.113.77', 8000).nameBound, false);
  });

  it('lets a deny win over any allow, by address or by name', () => {
    const byAddress = connect({ allow: ['0.0.0.0/0'], deny: ['203.0.113.5:22'] }, '203.0.113.5', 22);
    assert.equal(byAddress.allowed, false);
    assert.equal(byAddress.reason, 'denied by rule 203.0.113.5:22');
    assert.equal(connect({ allow: ['0.0.0.0/0'], deny: ['203.0.113.5:22'] }, '203.0.113.5', 23).allowed, true);
    const byName = connect({ allow: ['cdn.test'], deny: ['*.evil.test'] }, '198.51.100.1', 443, ['cdn.test', 'x.evil.test']);
    assert.equal(byName.allowed, false);
    assert.match(byName.reason, /^denied by rule \*\.evil\.test \(x\.evil\.test resolved to 198\.51\.100\.1\)$/);
  });

  it('applies the default action to public addresses no rule covers', () => {
    assert.equal(connect({ defaultAction: 'allow' }, '1.2.3.4', 80).reason, 'allowed by default');
    assert.equal(connect({ defaultAction: 'deny' }, '1.2.3.4', 80).reason, 'no rule allows 1.2.3.4:80 and the default is deny');
    assert.equal(connect({}, '1.2.3.4', 80).allowed, false, 'deny is the default');
  });

  it('refuses private, loopback, link-local and metadata addresses unless a rule names them', () => {
    const open = { defaultAction: 'allow' as const, allow: ['0.0.0.0/0', '10.0.0.0/7'] };
    for (const [ip, label] of [
      ['127.0.0.5', 'loopback'],
      ['10.1.2.3', 'private network'],
      ['169.254.169.254', 'link-local, cloud metadata'],
      ['169.254.10.10', 'link-local'],
      ['0.0.0.0', '"this network"; 0.0.0.0 reaches the host itself'],
      ['100.64.1.1', 'carrier-grade NAT'],
    ]) {
      const d = connect(open, ip as string, 80);
      assert.equal(d.allowed, false, ip);
      assert.equal(d.reason, `${ip} is a host-private address (${label}) and no rule names it`);
    }
    assert.equal(connect({ allow: ['10.1.0.0/16'] }, '10.1.2.3', 80).allowed, true, 'a CIDR inside 10/8 names it');
    assert.equal(connect({ allow: ['169.254.169.254:80'] }, '169.254.169.254', 80).allowed, true);
    assert.equal(connect({ allow: ['127.0.0.0/8'] }, '127.0.0.5', 6379).allowed, true);
  });

  it('reaches a private address through a domain rule the name matched, bound to that name', () => {
    const d = connect({ allow: ['db.corp.test:5432'], defaultAction: 'allow' }, '10.9.8.7', 5432, ['db.corp.test']);
    assert.equal(d.allowed, true);
    assert.equal(d.nameBound, true, 'private space is reachable only by that name');
    assert.equal(connect({ allow: ['db.corp.test:5432'], defaultAction: 'allow' }, '10.9.8.7', 5432, ['other.test']).allowed, false);
  });

  it('maps the host alias to this host loopback, only with a host.vmbox.internal rule on that port', () => {
    const p = { allow: ['host.vmbox.internal:8000-8999'] };
    const d = connect(p, HOST_ALIAS_ADDRESS, 8080);
    assert.equal(d.allowed, true);
    assert.deepEqual(d.dial, { host: '127.0.0.1', port: 8080 });
    assert.equal(connect(p, HOST_ALIAS_ADDRESS, 22).allowed, false);
    assert.match(
      connect({ defaultAction: 'allow', allow: ['169.254.0.0/16'] }, HOST_ALIAS_ADDRESS, 80).reason,
      /this host's loopback and no rule/,
    );
    assert.equal(connect({ allow: ['host.vmbox.internal'], deny: ['host.vmbox.internal:22'] }, HOST_ALIAS_ADDRESS, 22).allowed, false);
    assert.equal(connect({ allow: ['host.vmbox.internal'], deny: ['127.0.0.0/8'] }, HOST_ALIAS_ADDRESS, 80).allowed, false);
  });

  it('refuses what is not an IPv4 address or a port', () => {
    assert.match(connect({ defaultAction: 'allow' }, '2001:db8::1', 80).reason, /not an IPv4 address/);
    assert.match(connect({ defaultAction: 'allow' }, '1.2.3.4', 0).reason, /not a TCP port/);
  });

  it('prefers the longest CIDR and the exact name', () => {
    const p = policy({ allow: ['0.0.0.0/0', '203.0.113.0/24', '203.0.113.9'] });
    assert.equal(p.decideConnect({ ip: '203.0.113.9', port: 1 }).rule, '203.0.113.9');
    assert.equal(p.decideConnect({ ip: '203.0.113.8', port: 1 }).rule, '203.0.113.0/24');
    const n = policy({ allow: ['*.a.test', 'x.a.test:443'] });
    assert.equal(n.decideConnect({ ip: '1.1.1.1', port: 443, names: ['x.a.test'] }).rule, 'x.a.test:443');
  });
});

describe('decideServerName', () => {
  const req = { ip: '151.101.0.223', port: 443, names: ['pypi.org'] };

  it('binds a name-allowed connection to the names resolved to its address', () => {
    const p = policy({ allow: ['pypi.org', 'other.test'] });
    assert.equal(p.decideServerName({ ...req, serverName: 'PyPI.org.' }).allowed, true);
    const fronted = p.decideServerName({ ...req, serverName: 'evil.test' });
    assert.equal(fronted.allowed, false);
    assert.equal(fronted.reason, 'SNI/Host evil.test does not match the name(s) resolved to 151.101.0.223 (pypi.org)');
    assert.equal(p.decideServerName({ ...req, serverName: 'other.test' }).allowed, false, 'allowed, but not resolved to this address');
    assert.match(p.decideServerName({ ...req, serverName: undefined }).reason, /names no server/);
  });

  it('wants the server name itself allowed on the port', () => {
    const p = policy({ allow: ['pypi.org', 'files.test:80'] });
    const d = p.decideServerName({ ...req, names: ['pypi.org', 'files.test'], serverName: 'files.test' });
    assert.equal(d.allowed, false);
    assert.match(d.reason, /no rule allows it on port 443/);
  });

  it('checks only deny rules when the address was allowed by CIDR or by default', () => {
    const byCidr = policy({ allow: ['151.101.0.0/16'], deny: ['*.evil.test'] });
    assert.equal(byCidr.decideServerName({ ...req, serverName: 'anything.test' }).allowed, true);
    assert.equal(byCidr.decideServerName({ ...req, serverName: undefined }).allowed, true);
    assert.equal(
      byCidr.decideServerName({ ...req, serverName: 'a.evil.test' }).reason,
      'denied by rule *.evil.test (SNI/Host a.evil.test)',
    );
    const byDefault = policy({ defaultAction: 'allow', allow: ['pypi.org'] });
    assert.equal(byDefault.decideServerName({ ...req, serverName: 'elsewhere.test' }).allowed, true);
  });

  it('never allows what the connection itself may not do', () => {
    assert.equal(policy({}).decideServerName({ ...req, serverName: 'pypi.org' }).allowed, false);
  });
});

describe('NameRecord', () => {
  it('keeps the names per address, normalized and bounded, least recently seen out first', () => {
    const r = new NameRecord(2, 2);
    r.record('1.1.1.1', ['A.test.', 'b.test']);
    r.record('1.1.1.1', ['c.test']);
    assert.deepEqual(r.namesFor('1.1.1.1'), ['b.test', 'c.test']);
    r.record('2.2.2.2', ['x.test']);
    r.namesFor('1.1.1.1');
    r.record('3.3.3.3', ['y.test']);
    assert.deepEqual(r.namesFor('2.2.2.2'), [], 'the least recently seen address went');
    assert.deepEqual(r.namesFor('1.1.1.1'), ['b.test', 'c.test']);
    assert.equal(r.size, 2);
  });
});
