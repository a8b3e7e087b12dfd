/**
 * IPv4 addresses as unsigned 32-bit numbers, CIDR blocks, and the special ranges
 * a sandbox may reach only when a rule names them. Guests have no IPv6, so an
 * IPv6 address is an error here, never silently ignored.
 */

export interface Cidr {
  /** The network address, with every bit past the prefix zero. */
  base: number;
  prefix: number;
  mask: number;
}

/**
 * The address the guest dials for `host.vmbox.internal`. Never dialled itself:
 * it stands for this host's loopback. Link-local (169.254/16) because those
 * addresses are never routed, so the alias cannot shadow a real destination a
 * policy might allow (10.0.2.2, QEMU's user-network host, could be a real LAN
 * machine); clouds keep to 169.254.169.x and 169.254.170.x, and Podman uses this
 * same address for `host.containers.internal`.
 */
export const HOST_ALIAS_ADDRESS = '169.254.1.2';
/** Where a connection to HOST_ALIAS_ADDRESS goes. */
export const HOST_LOOPBACK = '127.0.0.1';

/** A strict dotted quad: four decimal parts 0..255 without leading zeros (inet_aton reads `010` as octal). */
const DOTTED_QUAD = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/;

/** The address as a number, or undefined when `text` is not a strict IPv4 dotted quad. */
export function tryParseIPv4(text: string): number | undefined {
  const m = DOTTED_QUAD.exec(text);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = Number(m[i]);
    if (part > 255) return undefined;
    n = n * 256 + part;
  }
  return n;
}

/** Why `text` is not an IPv4 address, in words a user can act on; undefined when it is one. */
export function ipv4Problem(text: string): string | undefined {
  if (tryParseIPv4(text) !== undefined) return undefined;
  if (text.includes(':')) return `${text} is an IPv6 address; a sandbox's guest has no IPv6, so only IPv4 addresses apply`;
  return `${text} is not an IPv4 address (four decimal numbers 0-255 without leading zeros, e.g. 10.1.2.3)`;
}

/** The address as a number; throws a RangeError that says what is wrong. */
export function parseIPv4(text: string): number {
  const n = tryParseIPv4(text);
  if (n === undefined) throw new RangeError(ipv4Problem(text));
  return n;
}

export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function prefixMask(prefix: number): number {
  // `>>> 0` keeps it unsigned; a shift by 32 is a no-op in JavaScript, hence the special case.
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** `a.b.c.d/n` (or a bare address, /32); throws a RangeError that says what is wrong. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIPv4(addr);
  if (slash < 0) return { base: ip, prefix: 32, mask: 0xffffffff };
  const p = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]?)$/.test(p) || Number(p) > 32) throw new RangeError(`${text} has prefix length /${p}; it must be 0 to 32`);
  const prefix = Number(p);
  const mask = prefixMask(prefix);
  const base = (ip & mask) >>> 0;
  if (base !== ip) throw new RangeError(`${text} has bits set past its /${prefix} prefix; did you mean ${formatIPv4(base)}/${prefix}?`);
  return { base, prefix, mask };
}

export function cidrContains(cidr: Cidr, ip: number): boolean {
  return (ip & cidr.mask) >>> 0 === cidr.base;
}

/** Whether every address of `inner` is inside `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, inner.base);
}

/** Ranges that are not the public internet: this host, its networks, or no destination at all. Most specific first. */
const SPECIAL = (
  [
    ['255.255.255.255/32', 'broadcast'],
    ['169.254.169.254/32', 'link-local, cloud metadata'],
    ['0.0.0.0/8', '"this network"; 0.0.0.0 reaches the host itself'],
    ['10.0.0.0/8', 'private network'],
    ['100.64.0.0/10', 'carrier-grade NAT'],
    ['127.0.0.0/8', 'loopback'],
    ['169.254.0.0/16', 'link-local'],
    ['172.16.0.0/12', 'private network'],
    ['192.0.0.0/24', 'IETF protocol assignments'],
    ['192.168.0.0/16', 'private network'],
    ['198.18.0.0/15', 'benchmarking'],
    ['224.0.0.0/4', 'multicast'],
    ['240.0.0.0/4', 'reserved'],
  ] as const
).map(([cidr, label]) => ({ cidr: parseCidr(cidr), label }));

/** What kind of special address `ip` is (e.g. `loopback`), or undefined for a public address. */
export function specialRange(ip: number): string | undefined {
  for (const s of SPECIAL) if (cidrContains(s.cidr, ip)) return s.label;
  return undefined;
}

/** Whether `cidr` lies wholly inside one special range: a rule over it names host-private space on purpose. */
export function withinSpecialRange(cidr: Cidr): boolean {
  return SPECIAL.some((s) => cidrWithin(cidr, s.cidr));
}

/** Whether `ip` (text or number) is in any special range; text that is not IPv4 counts as private. */
export function isPrivate(ip: string | number): boolean {
  const n = typeof ip === 'number' ? ip : tryParseIPv4(ip);
  return n === undefined || specialRange(n) !== undefined;
}
