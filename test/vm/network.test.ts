import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SandboxManager } from '../../src/runtime/manager.js';
import type { NetworkPolicyInput } from '../../src/spec/network.js';
import { type DnsServerFixture, startDnsServer } from '../fixtures/dns-server.js';
import { buildGuestTool } from '../fixtures/guest-tool.js';
import { clientHello, fetchHost, httpServer, httpsServer, silentServer, type TestHttp, waitForHttp } from '../fixtures/net-servers.js';
import { startNetns, type TestNetns } from '../fixtures/netns.js';
import { type TestRuntime, type TestSandbox, testRuntime } from '../fixtures/runtime.js';

/*
 * Every address here is on this machine: the test DNS server maps its names to
 * 127.0.0.x, where the test's own servers listen (loopback being unreachable
 * unless a rule names it is itself one of the checks), or to 198.51.100.x, which
 * exist only inside a network namespace this test makes (startNetns) and stand for
 * the public internet. A guest's own 127/8 is its loopback: the host hands it a
 * stand-in address for a host loopback address it resolved.
 */
let rt: TestRuntime;
let dns: DnsServerFixture;
let good: TestHttp; // good.test → 127.0.0.2
let bad: TestHttp; // bad.test → 127.0.0.3
let wild: TestHttp; // a.wild.test → 127.0.0.4
let other: TestHttp; // 127.0.0.5, no name
let pub: TestNetns; // pub.test → 198.51.100.2, pub2.test → 198.51.100.3

before(async () => {
  good = await httpServer('127.0.0.2');
  bad = await httpServer('127.0.0.3');
  wild = await httpServer('127.0.0.4');
  other = await httpServer('127.0.0.5');
  pub = startNetns(2);
  dns = await startDnsServer({
    a: {
      'good.test': ['127.0.0.2'],
      'bad.test': ['127.0.0.3'],
      'a.wild.test': ['127.0.0.4'],
      'other.test': ['127.0.0.5'],
      'pub.test': ['198.51.100.2'],
      'pub2.test': ['198.51.100.3'],
    },
  });
  for (const a of pub.addresses) await waitForHttp(`http://${a}:${pub.port}/i`);
  rt = await testRuntime();
});

after(async () => {
  await rt?.close();
  await Promise.all([good, bad, wild, other].map((s) => s?.close()));
  await dns?.close();
  pub?.close();
});

function net(p: NetworkPolicyInput): NetworkPolicyInput {
  return { dnsServers: [dns.address], ...p };
}

/** wget's output and exit code; -T bounds it. */
async function wget(sbx: TestSandbox, url: string, extra = ''): Promise<{ code: number; out: string }> {
  const r = await sbx.run(['sh', '-c', `wget -q -T 5 ${extra} -O - '${url}' 2>&1; echo "rc=$?"`]);
  const m = /rc=(\d+)\s*$/.exec(r.stdout);
  return { code: Number(m?.[1] ?? -1), out: r.stdout };
}

describe('networking', () => {
  test('a sandbox without a network has no route anywhere, and its traffic reaches nothing', async () => {
    const sbx = await rt.create();
    const before = good.connections;
    const r = await wget(sbx, `http://127.0.0.2:${good.port}/`);
    assert.notEqual(r.code, 0);
    const links = await sbx.run(['ls', '/sys/class/net']);
    assert.deepEqual(links.stdout.trim().split(/\s+/), ['dummy0', 'lo']);
    assert.equal(good.connections, before);
    await sbx.remove();
  });

  test('domains: an allowed name is resolved and reached; others are NXDOMAIN and never asked upstream', async () => {
    const sbx = await rt.create({ network: net({ allow: ['good.test', `*.wild.test:${wild.port}`] }) });
    const ok = await wget(sbx, `http://good.test:${good.port}/`);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /hello from 127\.0\.0\.2/);
    assert.equal(good.requests.at(-1)?.host, `good.test:${good.port}`);

    const denied = await wget(sbx, `http://bad.test:${bad.port}/`);
    assert.notEqual(denied.code, 0);
    assert.equal(dns.count('bad.test'), 0, 'a name no rule allows is not sent upstream');

    // The wildcard matches subdomains, on its port only.
    assert.equal((await wget(sbx, `http://a.wild.test:${wild.port}/`)).code, 0);
    const wildRequests = wild.requests.length;
    assert.notEqual((await wget(sbx, `http://a.wild.test:${good.port}/`)).code, 0);
    assert.equal(wild.requests.length, wildRequests);

    assert.equal(bad.connections, 0, 'the denied server saw no connection at all');

    const lines = sbx.logs(['network']).join('\n');
    assert.match(lines, /allowed good\.test \(127\.0\.0\.2\):\d+/);
    assert.match(lines, /dns bad\.test: refused/);
    await sbx.remove();
  });

  test('a faked name is caught: HTTP Host or TLS SNI that the guest did not resolve to that address', async () => {
    const tls = await httpsServer('127.0.0.2', ['good.test', 'bad.test']);
    try {
      const sbx = await rt.create({ network: net({ allow: ['good.test'] }) });
      // A TLS client's first bytes, naming good.test and then bad.test, sent to good.test's address.
      const agent = sbx.machine().agent;
      await agent.writeFile('/tmp/hello-good', await clientHello('good.test'));
      await agent.writeFile('/tmp/hello-bad', await clientHello('bad.test'));
      const answer = async (file: string) =>
        Number((await sbx.run(['sh', '-c', `timeout 3 nc good.test ${tls.port} < ${file} | wc -c`])).stdout.trim());
      assert.ok((await answer('/tmp/hello-good')) > 0, 'the server answered the ClientHello naming good.test');
      assert.equal(await answer('/tmp/hello-bad'), 0, 'nothing came back for the one naming bad.test');
      // HTTP: a Host header naming another site than the one resolved.
      const host = await wget(sbx, `http://good.test:${good.port}/`, "--header 'Host: bad.test'");
      assert.notEqual(host.code, 0);
      assert.ok(!good.requests.some((r) => r.host === 'bad.test'), 'no request with the faked Host reached the server');
      assert.match(sbx.logs(['network']).join('\n'), /SNI\/Host bad\.test/);
      await sbx.remove();
    } finally {
      await tls.close();
    }
  });

  test('CIDR and port rules; deny wins over allow; a site by address stays out', async () => {
    const [a, b] = pub.addresses as [string, string];
    let sbx = await rt.create({ network: net({ allow: [`${a}/32:${pub.port}`] }) });
    assert.match((await wget(sbx, `http://${a}:${pub.port}/i`)).out, new RegExp(`site ${a}`));
    assert.notEqual((await wget(sbx, `http://${b}:${pub.port}/i`)).code, 0);
    await sbx.remove();

    sbx = await rt.create({ network: net({ allow: ['198.51.100.0/24'], deny: [`${b}:${pub.port}`] }) });
    assert.equal((await wget(sbx, `http://${a}:${pub.port}/i`)).code, 0);
    assert.notEqual((await wget(sbx, `http://${b}:${pub.port}/i`)).code, 0);
    assert.match(sbx.logs(['network']).join('\n'), new RegExp(`refused ${b.replace(/\./g, '\\.')}:${pub.port}: denied by rule`, 'i'));
    await sbx.remove();

    // A domain rule reaches its name's address, not another by IP.
    sbx = await rt.create({ network: net({ allow: ['pub.test'] }) });
    assert.match((await wget(sbx, `http://pub.test:${pub.port}/i`)).out, /site 198\.51\.100\.2/);
    assert.notEqual((await wget(sbx, `http://${b}:${pub.port}/i`)).code, 0);
    await sbx.remove();
  });

  test('the open internet (default allow) still keeps host-private ranges and rebinding answers out', async () => {
    const sbx = await rt.create({ network: net({ defaultAction: 'allow' }) });
    assert.match((await wget(sbx, `http://pub2.test:${pub.port}/i`)).out, /site 198\.51\.100\.3/);
    // good.test resolves into loopback: with no rule naming it, that is a rebinding answer.
    const served = good.requests.length;
    assert.notEqual((await wget(sbx, `http://good.test:${good.port}/`)).code, 0);
    assert.notEqual((await wget(sbx, `http://127.0.0.5:${other.port}/`)).code, 0);
    assert.equal(good.requests.length, served);
    assert.equal(other.connections, 0);
    assert.notEqual((await wget(sbx, `http://169.254.169.254/`)).code, 0);
    // The host is reachable only through host.vmbox.internal, and only where a rule names it.
    assert.notEqual((await wget(sbx, `http://host.vmbox.internal:${good.port}/`)).code, 0);
    await sbx.remove();
  });

  test('host.vmbox.internal reaches the host’s loopback on the ports a rule names', async () => {
    const server = await httpServer('127.0.0.1');
    try {
      const sbx = await rt.create({ network: net({ allow: [`host.vmbox.internal:${server.port}`] }) });
      const r = await wget(sbx, `http://host.vmbox.internal:${server.port}/`);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /hello from 127\.0\.0\.1/);
      await sbx.remove();
    } finally {
      await server.close();
    }
  });

  test('a guest root that flushes the NAT rule, changes routes and sends raw packets reaches nothing', async () => {
    const flush = buildGuestTool(join(import.meta.dirname, '..', 'fixtures', 'flush-nat.c'));
    {
      // NET_ADMIN and NET_RAW: a root that can do all it tries (commands lack NET_ADMIN by default).
      const sbx = await rt.create({ network: net({ allow: ['good.test'] }), capAdd: ['NET_ADMIN', 'NET_RAW'] });
      await sbx.machine().agent.writeFile('/flush-nat', flush, { mode: 0o755 });
      const r = await sbx.run([
        'sh',
        '-c',
        [
          '/flush-nat',
          'ip route del default; ip route add default dev lo; ip route add 127.0.0.0/8 dev dummy0 table main 2>/dev/null',
          `ping -c 1 -W 1 10.0.2.2; ping -c 1 -W 1 127.0.0.2`,
          `wget -q -T 3 -O - http://10.0.2.2:${good.port}/; wget -q -T 3 -O - http://good.test:${good.port}/`,
          'echo done',
        ].join('; '),
      ]);
      assert.match(r.stdout, /flushed/);
      assert.match(r.stdout, /done/);
      assert.doesNotMatch(r.stdout, /hello from/);
      await sbx.remove();
    }
  });

  test('maxConnections bounds open connections; a policy update closes what it now refuses', async () => {
    const silent = await silentServer('127.0.0.1');
    try {
      const sbx = await rt.create({ network: net({ allow: [`host.vmbox.internal:${silent.port}`], maxConnections: 2 }) });
      // Each nc's stdin is a sleep, so it holds its connection until the host closes it.
      const held = sbx.exec(['sh', '-c', `for i in 1 2 3; do sleep 60 | nc host.vmbox.internal ${silent.port} & sleep 0.5; done; wait`]);
      await waitFor(() => silent.sockets.size === 2, 'two connections open');
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(silent.sockets.size, 2, 'the third was refused');
      const ncs = async () => (await sbx.run(['sh', '-c', 'ps -o comm | grep -c "^nc$"'])).stdout.trim();
      assert.equal(await ncs(), '2');
      await rt.manager.networking.update(sbx.id, { allow: [], dnsServers: [dns.address] });
      await waitFor(() => silent.sockets.size === 0, 'the host closed both');
      const end = Date.now() + 10_000;
      while ((await ncs()) !== '0' && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
      assert.equal(await ncs(), '0', 'both guest programs saw their connection end');
      held.abort();
      assert.match(sbx.logs(['network']).join('\n'), /maxConnections/);
      await sbx.remove();
    } finally {
      await silent.close();
    }
  });

  test('published ports: given at create, added and removed at runtime, a taken port is a clear error', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const takenPort = (taken.address() as { port: number }).port;
    try {
      const sbx = await rt.create({ ports: [{ hostPort: 0, guestPort: 8000 }] });
      sbx.exec(['sh', '-c', 'mkdir -p /www && echo guest-page > /www/index.html && httpd -f -p 8000 -h /www'], {});
      const [bound] = rt.manager.networking.ports(sbx.id);
      assert.equal(bound?.hostIp, '127.0.0.1');
      const body = await waitForHttp(`http://127.0.0.1:${bound?.hostPort}/index.html`);
      assert.equal(body, 'guest-page\n');

      const added = await rt.manager.networking.addPort(sbx.id, { hostPort: 0, guestPort: 8000 });
      assert.equal(await waitForHttp(`http://127.0.0.1:${added.hostPort}/index.html`), 'guest-page\n');
      rt.manager.networking.removePort(sbx.id, added.hostPort);
      await assert.rejects(fetchHost(`http://127.0.0.1:${added.hostPort}/`));

      await assert.rejects(
        rt.manager.networking.addPort(sbx.id, { hostPort: takenPort, guestPort: 8000 }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'portInUse');
          assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${takenPort}.*in use`));
          return true;
        },
      );
      await sbx.remove();
      await assert.rejects(rt.create({ ports: [{ hostPort: takenPort, guestPort: 80 }] }), /in use/);
      assert.equal(rt.manager.list().length, 0, 'the refused create left nothing behind');
    } finally {
      taken.close();
    }
  });

  test('bandwidth caps pace a download; the metrics count bytes and connections', async () => {
    const sbx = await rt.create({ network: net({ allow: ['good.test'], ingressBytesPerSec: 1024 * 1024 }) });
    const t = Date.now();
    const r = await sbx.run(['sh', '-c', `wget -q -O - 'http://good.test:${good.port}/big?n=${4 * 1024 * 1024}' | wc -c`]);
    const took = Date.now() - t;
    assert.equal(r.stdout.trim(), String(4 * 1024 * 1024));
    // One second's worth may pass at once (the bucket's burst); the other three are paced.
    assert.ok(took >= 2500, `4 MiB at 1 MiB/s took ${took} ms`);
    const m = await rt.manager.metrics(sbx.id);
    assert.ok((m.latest.network?.bytesIn ?? 0) >= 4 * 1024 * 1024);
    assert.equal(m.latest.network?.connections, 1);
    await sbx.remove();
  });

  test('a 1 GiB download through the host keeps the host’s memory bounded', async () => {
    const sbx = await rt.create({ network: net({ allow: ['good.test'] }) });
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    const r = await sbx.run(['sh', '-c', `wget -q -O - 'http://good.test:${good.port}/big?n=${1024 * 1024 * 1024}' | wc -c`], {
      timeoutMs: 300_000,
    });
    clearInterval(timer);
    assert.equal(r.stdout.trim(), String(1024 * 1024 * 1024));
    assert.ok(peak - rss0 < 128 * 1024 * 1024, `host memory grew by ${Math.round((peak - rss0) / 1048576)} MiB`);
    const stats = rt.manager.networking.stats(sbx.id);
    assert.ok(stats.bytesIn >= 1024 * 1024 * 1024);
    await sbx.remove();
  });
});

async function waitFor(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('secrets', () => {
  test('the host puts the value into requests to its host only; the guest sees a placeholder, never the value', async () => {
    const value = 'sk-real-value-0123456789';
    const api = await httpServer('127.0.0.2');
    const elsewhere = await httpServer('127.0.0.3');
    const sbx = await rt.create({
      network: net({ allow: ['good.test', 'bad.test'] }),
      secrets: [{ name: 'API_KEY', value, hosts: ['good.test'] }],
    });
    try {
      const env = await sbx.run(['sh', '-c', 'echo "$API_KEY"; echo "$SSL_CERT_FILE"; grep -c "BEGIN CERTIFICATE" "$SSL_CERT_FILE"']);
      const [placeholder, bundle, certs] = env.stdout.trim().split('\n');
      assert.match(placeholder ?? '', /^vmbox-secret-API_KEY-[0-9a-f]{32}$/);
      assert.equal(bundle, '/etc/ssl/certs/ca-certificates.crt');
      assert.ok(Number(certs) >= 1, 'the sandbox CA is in the bundle');

      const ok = await wget(sbx, `http://good.test:${api.port}/`, `--header "Authorization: Bearer $API_KEY"`);
      assert.equal(ok.code, 0, ok.out);
      assert.equal(api.requests.at(-1)?.headers.authorization, `Bearer ${value}`, 'the upstream got the real value');
      assert.ok(!ok.out.includes(value));

      const blocked = await wget(sbx, `http://bad.test:${elsewhere.port}/`, `--header "Authorization: Bearer $API_KEY"`);
      assert.notEqual(blocked.code, 0);
      assert.equal(elsewhere.requests.length, 0, 'the placeholder never reached another host');
      const lines = sbx.logs(['network']).join('\n');
      assert.match(lines, /secret API_KEY replaced/);
      assert.match(lines, /secret API_KEY blocked/);

      // Nowhere in the guest: every process's environment and command line, the files of its
      // memory file systems (searched here, on the host, so the search itself does not put it there).
      const scan = await sbx.run([
        'sh',
        '-c',
        'cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline; find /tmp /run /dev/shm -type f -exec cat {} + 2>/dev/null; true',
      ]);
      assert.ok(scan.stdout.includes(placeholder ?? '-'), 'the scan sees the environment');
      assert.ok(!scan.stdout.includes(value), 'no process or memory file holds the value');
      assert.ok(!lines.includes(value) && !sbx.logs(['system', 'stdout', 'stderr']).join('\n').includes(value), 'not in the logs');
      const info = rt.manager.get(sbx.id);
      assert.ok(!JSON.stringify(info).includes(value), 'not in what the API shows');
      // The whole of its memory: the VM's saved state holds every page of guest RAM.
      const vm = sbx.machine().vm;
      const dump = join(sbx.dir, 'memory.state');
      await vm.save(dump);
      await vm.resume();
      const memory = readFileSync(dump);
      assert.ok(memory.length > 16 * 1024 * 1024 && memory.includes(placeholder ?? '-'), 'the dump holds guest memory');
      assert.ok(!memory.includes(value), 'not in the guest’s memory');
      rmSync(dump);
      await sbx.run(['sync']);
      assert.ok(!readFileSync(join(sbx.dir, 'rootfs.qcow2')).includes(value), 'not on the guest’s disk');
    } finally {
      await sbx.remove();
      await api.close();
      await elsewhere.close();
    }
  });
});

describe('network across a server restart', () => {
  test('a re-adopted sandbox keeps its policy and its published ports', async () => {
    const sbx = await rt.create({ network: net({ allow: ['good.test'] }), ports: [{ hostPort: 0, guestPort: 8000 }] });
    // httpd without -f goes to the background on its own: it outlives the server's commands.
    await sbx.run(['sh', '-c', 'mkdir -p /www && echo kept > /www/index.html && httpd -p 8000 -h /www']);
    const [bound] = rt.manager.networking.ports(sbx.id);
    assert.equal(await waitForHttp(`http://127.0.0.1:${bound?.hostPort}/index.html`), 'kept\n');

    // The server goes (its listeners with it); the VM stays; the next one adopts it.
    rt.manager.close();
    await assert.rejects(fetchHost(`http://127.0.0.1:${bound?.hostPort}/index.html`));
    const next = new SandboxManager({ db: rt.manager.db, provider: rt.manager.provider });
    await next.recover();
    try {
      assert.deepEqual(next.networking.ports(sbx.id), [bound]);
      assert.equal(await waitForHttp(`http://127.0.0.1:${bound?.hostPort}/index.html`), 'kept\n');
      let out = '';
      const p = next.processes.exec(
        sbx.id,
        ['sh', '-c', `wget -q -T 5 -O - http://good.test:${good.port}/ && wget -q -T 5 -O - http://bad.test:${bad.port}/`],
        {},
        {
          onStdout: (b) => {
            out += b.toString();
          },
        },
      );
      const exit = await p.exit;
      assert.match(out, /hello from 127\.0\.0\.2/);
      assert.notEqual(exit.exitCode, 0, 'the policy still refuses bad.test');
      await next.remove(sbx.id, { force: true });
    } finally {
      next.close();
    }
  });
});
