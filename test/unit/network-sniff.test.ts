import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { SNIFF_LIMIT, type Sniffed, sniffServerName } from '../../src/network/sniff.js';

/** The first bytes a real TLS client (Node's) sends to a local server, with SNI `servername` if given. */
async function realClientHello(servername?: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const server = net.createServer();
  const got = new Promise<Buffer>((resolve) => {
    server.on('connection', (sock) => {
      sock.on('data', (d) => {
        chunks.push(d);
        const all = Buffer.concat(chunks);
        if (sniffServerName(all).kind !== 'incomplete') {
          sock.destroy();
          resolve(all);
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const client = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
  client.on('error', () => {});
  try {
    return await got;
  } finally {
    client.destroy();
    server.close();
  }
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b]);
const sniExt = (...names: string[]) =>
  Buffer.concat([u16(0), vec16(vec16(Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), vec16(Buffer.from(n))])))))]);

/** A minimal ClientHello with these extensions, in one TLS record (or `split` records). */
function clientHello(extensions: Buffer[], split = 1): Buffer {
  const body = Buffer.concat([
    u16(0x0303),
    Buffer.alloc(32, 7),
    Buffer.from([0]),
    vec16(u16(0x1301)),
    Buffer.from([1, 0]),
    vec16(Buffer.concat(extensions)),
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 255]), body]);
  const step = Math.ceil(hs.length / split);
  const records: Buffer[] = [];
  for (let off = 0; off < hs.length; off += step) {
    const frag = hs.subarray(off, off + step);
    records.push(Buffer.concat([Buffer.from([0x16, 3, 1]), u16(frag.length), frag]));
  }
  return Buffer.concat(records);
}

const http = (text: string) => sniffServerName(Buffer.from(text, 'latin1'));
const KINDS = new Set(['tls', 'http', 'other', 'incomplete']);

describe('sniffServerName: TLS', () => {
  it('reads the SNI of a real ClientHello, lower-cased without the trailing dot', async () => {
    const hello = await realClientHello('Example.TEST.');
    assert.deepEqual(sniffServerName(hello), { kind: 'tls', serverName: 'example.test' });
  });

  it('waits for the rest of a ClientHello split over reads, byte by byte', async () => {
    const hello = await realClientHello('pypi.test');
    for (let n = 0; n < hello.length; n++) assert.deepEqual(sniffServerName(hello.subarray(0, n)), { kind: 'incomplete' }, `${n} bytes`);
    assert.deepEqual(sniffServerName(hello), { kind: 'tls', serverName: 'pypi.test' });
  });

  it('finds no name in a ClientHello without SNI', async () => {
    assert.deepEqual(sniffServerName(await realClientHello()), { kind: 'tls' });
  });

  it('reads a ClientHello fragmented over several TLS records', () => {
    const grease = Buffer.concat([u16(0x0a0a), vec16(Buffer.alloc(300))]);
    const hello = clientHello([grease, sniExt('a.test')], 3);
    assert.deepEqual(sniffServerName(hello), { kind: 'tls', serverName: 'a.test' });
    assert.deepEqual(sniffServerName(hello.subarray(0, hello.length - 1)), { kind: 'incomplete' });
  });

  it('finds no name when the SNI is repeated, doubled or malformed', () => {
    assert.deepEqual(sniffServerName(clientHello([sniExt('a.test')])), { kind: 'tls', serverName: 'a.test' });
    assert.deepEqual(sniffServerName(clientHello([sniExt('a.test'), sniExt('b.test')])), { kind: 'tls' });
    assert.deepEqual(sniffServerName(clientHello([sniExt('a.test', 'b.test')])), { kind: 'tls' });
    assert.deepEqual(sniffServerName(clientHello([sniExt('a.test/evil')])), { kind: 'tls' });
    assert.deepEqual(sniffServerName(clientHello([sniExt('')])), { kind: 'tls' });
    const bad = clientHello([sniExt('a.test')]);
    bad[bad.length - 9] = 0xff; // the host_name's length now runs past its list
    assert.deepEqual(sniffServerName(bad), { kind: 'tls' });
  });

  it('decides at the cap instead of waiting for a record that claims more', () => {
    const head = Buffer.from([0x16, 3, 1, 0x40, 0x00, 1, 0x0f, 0xff, 0xff]);
    assert.deepEqual(sniffServerName(head), { kind: 'tls' }, 'a handshake longer than the cap');
    const partial = Buffer.concat([Buffer.from([0x16, 3, 1, 0x40, 0x00]), Buffer.alloc(SNIFF_LIMIT)]);
    partial.set([1, 0, 0x30, 0x00], 5); // a ClientHello of 12 KiB
    assert.deepEqual(sniffServerName(partial.subarray(0, 100)), { kind: 'incomplete' });
    assert.deepEqual(sniffServerName(Buffer.concat([partial.subarray(0, 9), Buffer.alloc(SNIFF_LIMIT, 0x16)])), { kind: 'tls' });
  });

  it('is not TLS without TLS record framing', () => {
    assert.deepEqual(sniffServerName(Buffer.from([0x16, 2, 0])), { kind: 'other' });
    assert.deepEqual(sniffServerName(Buffer.from([0x16, 3, 1, 0, 0])), { kind: 'other' });
  });
});

describe('sniffServerName: HTTP', () => {
  it('reads the Host of an HTTP/1.1 request, without its port', () => {
    assert.deepEqual(http('GET /x HTTP/1.1\r\nAccept: */*\r\nHost: Example.COM:8080\r\n\r\n'), { kind: 'http', host: 'example.com' });
    assert.deepEqual(http('POST / HTTP/1.0\r\nhost:a.test\r\n\r\nbody'), { kind: 'http', host: 'a.test' });
  });

  it('waits for the end of the headers', () => {
    const req = 'GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t\r\n\r\n';
    for (let n = 0; n < req.length; n++) assert.deepEqual(http(req.slice(0, n)), { kind: 'incomplete' }, JSON.stringify(req.slice(0, n)));
    assert.deepEqual(http(req), { kind: 'http', host: 'a.test' });
  });

  it('takes the target of an absolute-form or CONNECT request, refusing a Host that disagrees', () => {
    assert.deepEqual(http('GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n'), { kind: 'http', host: 'a.test' });
    assert.deepEqual(http('GET http://evil.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n'), { kind: 'http' });
    assert.deepEqual(http('CONNECT evil.test:443 HTTP/1.1\r\n\r\n'), { kind: 'http', host: 'evil.test' });
  });

  it('finds no name where servers could read another', () => {
    assert.deepEqual(http('GET / HTTP/1.1\r\nHost: a.test\r\nHost: evil.test\r\n\r\n'), { kind: 'http' }, 'two Hosts');
    assert.deepEqual(http('GET / HTTP/1.1\nHost: evil.test\n\n'), { kind: 'http' }, 'bare LF');
    assert.deepEqual(http('GET / HTTP/1.1\r\nX: y\nHost: evil.test\r\n\r\n'), { kind: 'http' }, 'a bare LF inside');
    assert.deepEqual(http('GET / HTTP/1.1\r\nX: y\r\n Host: evil.test\r\n\r\n'), { kind: 'http' }, 'obs-fold');
    assert.deepEqual(http('GET / HTTP/1.1\r\nHost : evil.test\r\n\r\n'), { kind: 'http' }, 'space before colon');
    assert.deepEqual(http('GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n'), { kind: 'http' }, 'IPv6 literal');
    assert.deepEqual(http('GET / HTTP/1.0\r\n\r\n'), { kind: 'http' }, 'no Host');
    assert.deepEqual(http('GET / HTTP/1.7\r\nHost: a.test\r\n\r\n'), { kind: 'http' }, 'unknown version');
    assert.deepEqual(http('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), { kind: 'http' }, 'HTTP/2 prior knowledge');
    assert.deepEqual(http(`GET /${'a'.repeat(SNIFF_LIMIT)}`), { kind: 'http' }, 'a request line past the cap');
  });

  it('is not HTTP when the first line is something else', () => {
    for (const text of [
      'SSH-2.0-OpenSSH_9.6\r\n',
      '*1\r\n$4\r\nPING\r\n',
      'SET a b\r\n',
      'GET\x00',
      'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
      'hello',
    ]) {
      assert.deepEqual(http(text), { kind: 'other' }, JSON.stringify(text));
    }
    assert.deepEqual(sniffServerName(Buffer.alloc(0)), { kind: 'incomplete' });
    assert.deepEqual(http('GE'), { kind: 'incomplete' });
  });
});

describe('sniffServerName: hostile input', () => {
  it('never throws nor misreads on random, truncated and mutated input', async () => {
    const hello = await realClientHello('fuzz.test');
    const req = Buffer.from('GET / HTTP/1.1\r\nHost: fuzz.test\r\n\r\n');
    const check = (b: Buffer) => {
      const s: Sniffed = sniffServerName(b);
      assert.ok(KINDS.has(s.kind), s.kind);
      const name = s.kind === 'tls' ? s.serverName : s.kind === 'http' ? s.host : undefined;
      if (name !== undefined) assert.match(name, /^[a-z0-9_.-]+$/);
    };
    for (let i = 0; i < 3000; i++) {
      check(randomBytes(randomInt(200)));
      for (const base of [hello, req]) {
        const m = Buffer.from(base.subarray(0, randomInt(base.length + 1)));
        for (let k = 0; k < 1 + (i % 3); k++) if (m.length) m[randomInt(m.length)] = randomInt(256);
        check(m);
      }
    }
    check(Buffer.alloc(SNIFF_LIMIT * 4, 0x16));
    check(Buffer.alloc(SNIFF_LIMIT * 4, 0x41));
  });
});
