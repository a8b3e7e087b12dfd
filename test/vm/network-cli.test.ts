import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PortError, Sandbox } from '../../src/index.js';
import { cliIn } from '../fixtures/cli.js';
import { type DnsServerFixture, startDnsServer } from '../fixtures/dns-server.js';
import { isolatedHome, type TestHome } from '../fixtures/home.js';
import { fetchHost, httpServer, type TestHttp, waitForHttp } from '../fixtures/net-servers.js';

/*
 * Networking as a user drives it: `vmbox run/create/exec/port/network/logs` and
 * the SDK, against a real server of its own in a home of its own. Every address
 * is on this machine: the test DNS server maps good.test and bad.test to
 * 127.0.0.2 and 127.0.0.3, where this process's HTTP servers listen, and
 * published ports listen on 127.0.0.1. The CLI runs without blocking this
 * process, which answers the guest's DNS and HTTP.
 */
let t: TestHome;
let dns: DnsServerFixture;
let good: TestHttp; // good.test → 127.0.0.2
let bad: TestHttp; // bad.test → 127.0.0.3
let taken: Server; // holds a host port, so publishing on it must fail
let takenPort: number;

const { vmbox, ok, refused } = cliIn(() => t.env);
/** A bounded fetch in the guest, printing the body. */
const wget = (url: string) => ['wget', '-qO-', '-T', '5', url];
const names = async () => (JSON.parse(await ok('ls', '--json')) as { name: string }[]).map((s) => s.name).sort();

before(async () => {
  good = await httpServer('127.0.0.2');
  bad = await httpServer('127.0.0.3');
  dns = await startDnsServer({ a: { 'good.test': ['127.0.0.2'], 'bad.test': ['127.0.0.3'] } });
  taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  takenPort = (taken.address() as { port: number }).port;
  t = isolatedHome();
  // The in-process SDK talks to the same server as the CLI runs.
  process.env.VMBOX_HOME = t.home;
  delete process.env.VMBOX_SOCKET;
});

after(async () => {
  await vmbox('rm', '-f', 'web').catch(() => {});
  await t?.cleanup();
  await Promise.all([good?.close(), bad?.close(), dns?.close()]);
  taken?.close();
});

describe('vmbox run with a network policy', () => {
  it('--allow with --dns reaches the allowed name: the host server answers', { timeout: 60_000 }, async () => {
    const out = await ok('run', '--allow', 'good.test', '--dns', dns.address, '--', ...wget(`http://good.test:${good.port}/`));
    assert.equal(out, 'hello from 127.0.0.2\n');
    assert.equal(good.requests.at(-1)?.host, `good.test:${good.port}`);
    assert.deepEqual(await names(), [], "the run's sandbox is gone");
  });

  it('without a network flag reaches nothing, and no server saw a thing', { timeout: 60_000 }, async () => {
    const [connections, asked] = [good.connections, dns.asked.length];
    const r = await vmbox('run', '--', ...wget(`http://good.test:${good.port}/`));
    assert.notEqual(r.status, 0);
    assert.equal(r.stdout, '');
    assert.equal(good.connections, connections);
    assert.equal(dns.asked.length, asked, 'not even a DNS question left the host');
  });

  it('--deny wins over --allow', { timeout: 60_000 }, async () => {
    // *.test allows both names; the deny takes bad.test back.
    const script = `wget -qO- -T 5 http://good.test:${good.port}/; echo rc=$?; wget -qO- -T 5 http://bad.test:${bad.port}/; echo rc=$?`;
    const r = await vmbox('run', '--allow', '*.test', '--deny', 'bad.test', '--dns', dns.address, '--', 'sh', '-c', script);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'hello from 127.0.0.2\nrc=0\nrc=1\n');
    assert.equal(bad.connections, 0, 'the denied server saw no connection');
    assert.equal(dns.count('bad.test'), 0, 'the denied name was not asked upstream');
  });

  it('a malformed rule is one error line naming it, and nothing is made', { timeout: 60_000 }, async () => {
    for (const verb of [['run'], ['create', '--name', 'never']]) {
      const line = await refused(...verb, '--allow', 'bad rule!', '--', 'true');
      assert.match(line, /network\.allow.*"bad rule!"/);
    }
    // One that fits the rule's characters but is not a domain is named as well, with what is wrong.
    assert.match(await refused('run', '--deny', 'a..b', '--', 'true'), /network\.deny.*"a\.\.b" has the label ""/);
    assert.deepEqual(await names(), []);
  });
});

describe('vmbox create -p, vmbox port, vmbox network, vmbox logs', () => {
  let hostPort: number;

  it('-p 0:8000 publishes guest port 8000 on a free 127.0.0.1 port that answers the guest page', { timeout: 60_000 }, async () => {
    assert.equal(await ok('create', '--name', 'web', '--memory', '256', '-p', '0:8000'), 'web\n');
    await ok('exec', 'web', '--', 'sh', '-c', 'mkdir -p /www && echo guest-page > /www/index.html && httpd -p 8000 -h /www');
    const table = await ok('port', 'ls', 'web');
    const m = /^HOST +GUEST PORT\n127\.0\.0\.1:(\d+) +8000\n$/.exec(table);
    assert.ok(m, `the table: ${JSON.stringify(table)}`);
    hostPort = Number(m[1]);
    assert.ok(hostPort > 0, 'port 0 asked for a free one');
    assert.equal(await waitForHttp(`http://127.0.0.1:${hostPort}/index.html`), 'guest-page\n');
    // The SDK sees the port actually bound.
    const sbx = await Sandbox.connect('web');
    assert.equal(sbx.getHost(8000), `127.0.0.1:${hostPort}`);
    sbx.close();
  });

  it('port add and port rm change what answers; a taken host port is a clear error', { timeout: 60_000 }, async () => {
    const added = /^127\.0\.0\.1:(\d+) -> 8000\n$/.exec(await ok('port', 'add', 'web', '0:8000'));
    assert.ok(added);
    const second = Number(added[1]);
    assert.notEqual(second, hostPort);
    assert.equal(await fetchHost(`http://127.0.0.1:${second}/index.html`), 'guest-page\n');
    assert.match(await ok('port', 'ls', 'web'), new RegExp(`127\\.0\\.0\\.1:${hostPort} +8000\\n127\\.0\\.0\\.1:${second} +8000\\n$`));

    assert.equal(await ok('port', 'rm', 'web', String(hostPort)), '');
    await assert.rejects(fetchHost(`http://127.0.0.1:${hostPort}/`), 'nothing listens there any more');
    assert.equal(await fetchHost(`http://127.0.0.1:${second}/index.html`), 'guest-page\n', 'the other still answers');
    // hostIP:hostPort names it too.
    assert.equal(await ok('port', 'rm', 'web', `127.0.0.1:${second}`), '');
    assert.equal(await ok('port', 'ls', 'web'), 'HOST   GUEST PORT\n');
    assert.match(await refused('port', 'rm', 'web', String(second)), new RegExp(`no published port 127\\.0\\.0\\.1:${second}`));

    const inUse = `cannot publish on 127.0.0.1:${takenPort}: it is in use on this host; choose another host port`;
    assert.equal(await refused('port', 'add', 'web', `${takenPort}:8000`), `vmbox: ${inUse}`);
    assert.equal(await refused('create', '--name', 'clash', '-p', `${takenPort}:80`), `vmbox: ${inUse}`);
    assert.deepEqual(await names(), ['web'], 'the refused create left nothing behind');
    // Published again, for what follows.
    hostPort = Number(/:(\d+) -> 8000\n$/.exec(await ok('port', 'add', 'web', '0:8000'))?.[1]);
    assert.equal(await fetchHost(`http://127.0.0.1:${hostPort}/index.html`), 'guest-page\n');
  });

  it(
    'network update opens an allowed name, network show prints the policy, logs --source network the decisions',
    { timeout: 60_000 },
    async () => {
      const fetchIn = (host: string, port: number) => vmbox('exec', 'web', '--', ...wget(`http://${host}:${port}/`));
      assert.deepEqual(JSON.parse(await ok('network', 'show', 'web')), { enabled: false, defaultAction: 'deny', allow: [], deny: [] });
      const before = good.connections;
      assert.notEqual((await fetchIn('good.test', good.port)).status, 0, 'no network yet');
      assert.equal(good.connections, before);

      const policy = { defaultAction: 'deny', allow: ['good.test'], deny: [], dnsServers: [dns.address], enabled: true };
      assert.deepEqual(JSON.parse(await ok('network', 'update', 'web', '--allow', 'good.test', '--dns', dns.address)), policy);
      const fetched = await fetchIn('good.test', good.port);
      assert.equal(fetched.stdout, 'hello from 127.0.0.2\n', fetched.stderr);
      assert.notEqual((await fetchIn('bad.test', bad.port)).status, 0);
      assert.equal(bad.connections, 0);
      assert.deepEqual(JSON.parse(await ok('network', 'show', 'web')), policy);

      // A malformed rule changes nothing.
      assert.match(await refused('network', 'update', 'web', '--allow', 'bad rule!'), /"bad rule!"/);
      assert.deepEqual(JSON.parse(await ok('network', 'show', 'web')), policy);

      const lines = (await ok('logs', 'web', '--source', 'network')).split('\n');
      assert.equal(lines.pop(), '', 'the output ends with a newline');
      for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT[\d:.]+Z \[network\] \S/, `one decision a line: ${l}`);
      const text = lines.join('\n');
      assert.match(text, new RegExp(`\\[network\\] inbound 127\\.0\\.0\\.1:${hostPort} → guest port 8000`));
      assert.match(text, /\[network\] dns good\.test: allowed by rule good\.test/);
      assert.match(text, new RegExp(`\\[network\\] allowed good\\.test \\(127\\.0\\.0\\.2\\):${good.port}: allowed by rule good\\.test`));
      assert.match(text, /\[network\] dns bad\.test: refused: no rule allows the name bad\.test/);
      assert.match(await ok('logs', 'web', '--source', 'system'), /\[vmbox\] network policy changed: default deny; allow good\.test\n/);

      // --off keeps the rules and closes the network.
      assert.equal(JSON.parse(await ok('network', 'update', 'web', '--off', '--allow', 'good.test', '--dns', dns.address)).enabled, false);
      const served = good.connections;
      assert.notEqual((await fetchIn('good.test', good.port)).status, 0);
      assert.equal(good.connections, served);
      // A published port works with the network off.
      assert.equal(await fetchHost(`http://127.0.0.1:${hostPort}/index.html`), 'guest-page\n');
    },
  );
});

describe('the SDK', () => {
  it('creates with a network and ports; getHost, ports.add/list/remove, network.update, PortError', { timeout: 90_000 }, async () => {
    const sbx = await Sandbox.create({
      memoryMib: 256,
      network: { allow: ['good.test'], dnsServers: [dns.address] },
      ports: [{ guestPort: 8000 }],
    });
    try {
      const host = sbx.getHost(8000);
      assert.match(host, /^127\.0\.0\.1:\d+$/);
      assert.notEqual(host, '127.0.0.1:0');
      await sbx.commands.run('mkdir -p /www && echo sdk-page > /www/index.html && httpd -p 8000 -h /www');
      assert.equal(await waitForHttp(`http://${host}/index.html`), 'sdk-page\n');
      assert.equal((await sbx.commands.run(`wget -qO- -T 5 http://good.test:${good.port}/`)).stdout, 'hello from 127.0.0.2\n');

      const [first] = await sbx.ports.list();
      assert.deepEqual(first, { hostIp: '127.0.0.1', hostPort: Number(host.split(':')[1]), guestPort: 8000, protocol: 'tcp' });
      const added = await sbx.ports.add({ guestPort: 8000 });
      assert.equal(added.hostIp, '127.0.0.1');
      assert.equal(await fetchHost(`http://127.0.0.1:${added.hostPort}/index.html`), 'sdk-page\n');
      assert.deepEqual((await sbx.ports.list()).map((p) => p.hostPort).sort(), [first?.hostPort, added.hostPort].sort());

      await assert.rejects(sbx.ports.add({ guestPort: 8000, hostPort: takenPort }), (err: Error) => {
        assert.ok(err instanceof PortError, `${err.name}: ${err.message}`);
        assert.equal(err.code, 'portInUse');
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${takenPort}.*in use`));
        return true;
      });

      assert.deepEqual(await sbx.ports.remove(first?.hostPort as number), first);
      await assert.rejects(fetchHost(`http://${host}/`));
      assert.equal(sbx.getHost(8000), `127.0.0.1:${added.hostPort}`, 'getHost follows the change');
      await sbx.ports.remove(added.hostPort);
      assert.throws(() => sbx.getHost(8000), /guest port 8000 is not published/);

      const closed = await sbx.network.update({ allow: [], dnsServers: [dns.address] });
      assert.deepEqual(closed, { enabled: true, defaultAction: 'deny', allow: [], deny: [], dnsServers: [dns.address] });
      assert.deepEqual(await sbx.network.get(), closed);
      const served = good.connections;
      assert.notEqual((await sbx.commands.run(`wget -qO- -T 5 http://good.test:${good.port}/`, { throwOnError: false })).exitCode, 0);
      assert.equal(good.connections, served);

      const network: string[] = [];
      for await (const e of sbx.logs({ sources: ['network'] })) network.push(e.text);
      assert.ok(
        network.some((l) => /^dns good\.test: refused/.test(l)),
        network.join('\n'),
      );
    } finally {
      await sbx.kill();
    }
    const before = await Sandbox.list();
    await assert.rejects(
      Sandbox.create({ memoryMib: 256, ports: [{ guestPort: 80, hostPort: takenPort }] }),
      (err: Error) => err instanceof PortError && err.code === 'portInUse',
    );
    assert.deepEqual(
      (await Sandbox.list()).map((s) => s.id),
      before.map((s) => s.id),
      'the refused create left nothing behind',
    );
  });
});

describe('pause and resume through the CLI and the SDK', () => {
  it('vmbox pause ends the VM; Sandbox.connect resumes it with its memory and its network', { timeout: 120_000 }, async () => {
    await ok('create', '--name', 'nap', '--allow', 'good.test', '--dns', dns.address);
    await ok('exec', 'nap', '--', 'sh', '-c', 'echo kept > /dev/shm/mark');
    assert.equal(await ok('pause', 'nap'), 'nap\n');
    const listed = JSON.parse(await ok('ls', '--json')) as { name: string; state: string; pid: number | null }[];
    assert.deepEqual(
      listed.filter((s) => s.name === 'nap').map((s) => [s.state, s.pid]),
      [['paused', null]],
    );
    const sbx = await Sandbox.connect('nap');
    try {
      assert.equal((await sbx.getInfo()).state, 'running');
      assert.equal((await sbx.commands.run('cat /dev/shm/mark')).stdout, 'kept\n');
      // The guest's network, set up before the pause, works with the new host side.
      assert.equal((await sbx.commands.run(wget(`http://good.test:${good.port}/`).join(' '))).stdout, 'hello from 127.0.0.2\n');
      await sbx.pause();
      assert.equal(await ok('resume', 'nap'), 'nap\n');
      assert.equal((await sbx.commands.run('cat /dev/shm/mark')).stdout, 'kept\n');
    } finally {
      sbx.close();
      await vmbox('rm', '-f', 'nap');
    }
  });
});
