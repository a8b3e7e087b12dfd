/**
 * The server a TCP connection names in its first bytes: the SNI of a TLS
 * ClientHello, or the Host of an HTTP/1.x request. The guest wrote these bytes,
 * so every length is checked and every loop is bounded by the input; nothing
 * here throws. Where a name is missing, malformed or said twice in different
 * ways, none is returned: a caller that needs one (policy.ts's name-bound
 * connections) then refuses, rather than guess which one the server will use.
 */

export type Sniffed = { kind: 'tls'; serverName?: string } | { kind: 'http'; host?: string } | { kind: 'other' } | { kind: 'incomplete' };

/** Bytes read at most before deciding: a ClientHello with post-quantum key shares is about 2 KiB, and HTTP headers rarely pass 8 KiB. */
export const SNIFF_LIMIT = 16 * 1024;

const TLS_HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;
const SNI_EXTENSION = 0;
const MAX_RECORD = 16384;
const HOST = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;

/** `firstBytes` is everything the connection has sent so far; call again with more while the answer is `incomplete`. */
export function sniffServerName(firstBytes: Buffer): Sniffed {
  const data = firstBytes.subarray(0, SNIFF_LIMIT);
  const full = firstBytes.length >= SNIFF_LIMIT;
  const b0 = data[0];
  if (b0 === undefined) return { kind: 'incomplete' };
  if (b0 === TLS_HANDSHAKE) return sniffTls(data, full);
  if (b0 >= 0x41 && b0 <= 0x5a) return sniffHttp(data, full);
  return { kind: 'other' };
}

/** A host name as sent, lower-cased without a trailing dot; undefined unless it is letters, digits, `-`, `_` and dots. */
function hostName(raw: string): string | undefined {
  const name = raw.toLowerCase().replace(/\.$/, '');
  return name.length <= 253 && HOST.test(name) ? name : undefined;
}

function sniffTls(data: Buffer, full: boolean): Sniffed {
  const waitOr = (s: Sniffed): Sniffed => (full ? s : { kind: 'incomplete' });
  if (data.length >= 2 && data[1] !== 3) return { kind: 'other' }; // not TLS 1.x / SSL 3 record framing
  // The ClientHello may span several handshake records: gather their payloads until it is whole.
  const parts: Buffer[] = [];
  let gathered = 0;
  let need: number | undefined;
  for (let off = 0; ; ) {
    if (off + 5 > data.length) return waitOr({ kind: 'tls' });
    const len = data.readUInt16BE(off + 3);
    if (data[off] !== TLS_HANDSHAKE || data[off + 1] !== 3 || len === 0 || len > MAX_RECORD)
      return off === 0 ? { kind: 'other' } : { kind: 'tls' };
    const have = Math.min(len, data.length - off - 5);
    parts.push(data.subarray(off + 5, off + 5 + have));
    gathered += have;
    if (need === undefined && gathered >= 4) {
      // Read the handshake header as soon as it is here, so a hello that claims too much is decided at once.
      const head = Buffer.concat(parts);
      if (head[0] !== CLIENT_HELLO) return { kind: 'tls' };
      need = 4 + head.readUIntBE(1, 3);
      if (need > SNIFF_LIMIT) return { kind: 'tls' };
    }
    if (need !== undefined && gathered >= need) return tlsResult(clientHelloSni(Buffer.concat(parts).subarray(4, need)));
    if (have < len) return waitOr({ kind: 'tls' });
    off += 5 + len;
  }
}

/** Results carry no `undefined` members, so they compare and log cleanly. */
function tlsResult(serverName: string | undefined): Sniffed {
  return serverName === undefined ? { kind: 'tls' } : { kind: 'tls', serverName };
}

function httpResult(host: string | undefined): Sniffed {
  return host === undefined ? { kind: 'http' } : { kind: 'http', host };
}

/** Reads a ClientHello body front to back; throws Short on any length past its bounds. */
class Reader {
  constructor(
    private readonly b: Buffer,
    private off = 0,
  ) {}
  get left(): number {
    return this.b.length - this.off;
  }
  skip(n: number): void {
    this.bytes(n);
  }
  u8(): number {
    return this.bytes(1)[0] as number;
  }
  u16(): number {
    return this.bytes(2).readUInt16BE(0);
  }
  bytes(n: number): Buffer {
    if (n > this.left) throw new Short();
    this.off += n;
    return this.b.subarray(this.off - n, this.off);
  }
}
class Short extends Error {}

/** The host_name of the server_name extension (RFC 6066 §3); undefined when absent, repeated or malformed. */
function clientHelloSni(body: Buffer): string | undefined {
  try {
    const r = new Reader(body);
    r.skip(2 + 32); // legacy_version, random
    r.skip(r.u8()); // legacy_session_id
    r.skip(r.u16()); // cipher_suites
    r.skip(r.u8()); // legacy_compression_methods
    if (r.left === 0) return undefined; // no extensions at all
    const exts = new Reader(r.bytes(r.u16()));
    if (r.left !== 0) return undefined;
    let found: string | undefined;
    let seen = false;
    while (exts.left > 0) {
      const type = exts.u16();
      const ext = exts.bytes(exts.u16());
      if (type !== SNI_EXTENSION) continue;
      if (seen) return undefined; // an extension may appear once (RFC 8446 §4.2)
      seen = true;
      const er = new Reader(ext);
      const list = new Reader(er.bytes(er.u16()));
      if (er.left !== 0) return undefined;
      while (list.left > 0) {
        const nameType = list.u8();
        const name = list.bytes(list.u16());
        if (nameType !== 0) continue;
        if (found !== undefined) return undefined; // one host_name at most (RFC 6066 §3)
        found = hostName(name.toString('latin1')) ?? '';
      }
    }
    return found || undefined;
  } catch (err) {
    if (err instanceof Short) return undefined;
    throw err;
  }
}

/** What a request line must be for its Host to be read. */
const REQUEST_LINE = /^([A-Z]{1,20}) ([\x21-\x7e]+) HTTP\/1\.[01]$/;
/** What makes a first line HTTP at all (`PRI * HTTP/2.0`, `GET / HTTP/1.1`), strict or not. */
const HTTP_START = /^[A-Z]{1,20} [^ ]+ HTTP\//;
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):(.*)$/;

/**
 * A first line that looks like HTTP makes the connection HTTP, whatever follows:
 * a Host is then read only from a strict HTTP/1.0 or 1.1 head. Anything looser
 * (a bare LF, which some servers accept as a line end; HTTP/2 with prior
 * knowledge, whose name is HPACK-coded) is HTTP with no name, not `other`, so a
 * name-bound connection cannot slip a server name past the check.
 */
function sniffHttp(data: Buffer, full: boolean): Sniffed {
  const newline = data.indexOf(0x0a);
  const head = data.toString('latin1', 0, newline < 0 ? data.length : newline);
  if (newline < 0) {
    if (/[^\x20-\x7e\r]/.test(head) || !/^[A-Z]{0,20}( |$)/.test(head)) return { kind: 'other' };
    return full ? { kind: 'http' } : { kind: 'incomplete' }; // a method, a space and a printable line up to the cap
  }
  if (!HTTP_START.test(head)) return { kind: 'other' };
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return full ? { kind: 'http' } : looseLineEnds(data.toString('latin1')) ? { kind: 'http' } : { kind: 'incomplete' };
  const lines = data.toString('latin1', 0, end);
  if (looseLineEnds(lines) || !REQUEST_LINE.test(head.slice(0, -1))) return { kind: 'http' };
  return httpResult(requestHost(lines.split('\r\n')));
}

/** A CR or LF outside a CRLF pair (a CR last in the bytes so far may yet get its LF). */
function looseLineEnds(text: string): boolean {
  return /\r(?!\n|$)|(?<!\r)\n/.test(text);
}

/** The host a server will use: the request target's authority (absolute or CONNECT form), else the one Host header. */
function requestHost(lines: string[]): string | undefined {
  const [, method, target] = REQUEST_LINE.exec(lines[0] ?? '') ?? [];
  const hosts: string[] = [];
  for (const line of lines.slice(1)) {
    const m = HEADER.exec(line);
    if (!m) return undefined; // obs-fold or a malformed field: servers must reject the request (RFC 9112 §5)
    if (m[1]?.toLowerCase() === 'host') hosts.push(trimSpace(m[2] ?? ''));
  }
  if (hosts.length > 1) return undefined;
  const header = hosts[0] === undefined ? undefined : authorityHost(hosts[0]);
  if (hosts[0] !== undefined && header === undefined) return undefined;
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(target ?? '')?.[1];
  if (absolute === undefined && method !== 'CONNECT') return header;
  const fromTarget = authorityHost(absolute ?? target ?? '');
  return header === undefined || header === fromTarget ? fromTarget : undefined;
}

/** Without the spaces and tabs around a field value; a loop, as a regex here could take quadratic time on a hostile line. */
function trimSpace(value: string): string {
  const blank = (i: number) => value[i] === ' ' || value[i] === '\t';
  let from = 0;
  let to = value.length;
  while (from < to && blank(from)) from++;
  while (to > from && blank(to - 1)) to--;
  return value.slice(from, to);
}

/** `[userinfo@]host[:port]` → host; undefined for an IPv6 literal (the guest has none) or a malformed one. */
function authorityHost(authority: string): string | undefined {
  const hostPort = authority.slice(authority.lastIndexOf('@') + 1);
  const m = /^([^:[\]]*)(?::[0-9]{0,5})?$/.exec(hostPort);
  return m?.[1] ? hostName(m[1]) : undefined;
}
