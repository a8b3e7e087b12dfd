import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { Transform } from 'node:stream';
import { inspect } from 'node:util';

import { SpecError, VmboxError } from '../errors.js';

/** A secret as the user gives it: the guest sees `name` set to a placeholder, never `value`. */
export interface SecretSpec {
  name: string;
  value: string;
  /** Where the value may go: `api.example.com`, `*.example.com` (subdomains only) or an IP address. */
  hosts: string[];
}

/** A secret as the rest of the host sees it: its value stays inside the SecretSet. */
export interface Secret {
  readonly name: string;
  readonly placeholder: string;
  readonly hosts: readonly string[];
}

const PREFIX = 'vmbox-secret-';
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** The name cannot hold `-`, so the parts read back unambiguously. */
const PLACEHOLDER = /vmbox-secret-[A-Za-z_][A-Za-z0-9_]{0,63}-[0-9a-f]{32}/g;
const DOMAIN = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
/**
 * Responses have a value masked wherever it appears; a shorter value would mask ordinary
 * text, and is not a credential worth the machinery anyway.
 */
const MIN_VALUE_LENGTH = 8;

/** What the guest sees instead of a secret: its name, so a log tells which, and 128 random bits. */
export function makePlaceholder(name: string): string {
  return `${PREFIX}${name}-${randomBytes(16).toString('hex')}`;
}

/** A host name as compared: lower case, without the root's trailing dot. */
export function normalizeHost(hostname: string): string {
  return hostname.toLowerCase().replace(/\.$/, '');
}

/** `*.example.com` matches the names under example.com, not example.com itself (as the network rules do). */
export function hostMatches(pattern: string, hostname: string): boolean {
  const host = normalizeHost(hostname);
  const p = normalizeHost(pattern);
  return p.startsWith('*.') ? host.endsWith(p.slice(1)) && host.length > p.length - 1 : host === p;
}

/**
 * A sandbox's secrets. The values live only here: what leaves is a placeholder, a name,
 * or a request already rewritten for a host the secret belongs to.
 */
export class SecretSet {
  readonly #values = new Map<string, string>();
  readonly #byPlaceholder = new Map<string, Secret>();
  readonly #secrets: Secret[] = [];

  private constructor() {}

  /** `placeholders` are the ones made before (name → placeholder), kept so a restarted sandbox keeps its environment. */
  static create(specs: readonly SecretSpec[], placeholders: Readonly<Record<string, string>> = {}): SecretSet {
    const set = new SecretSet();
    specs.forEach((spec, i) => {
      checkSpec(spec, i);
      if (set.#values.has(spec.name)) throw new SpecError(`secrets[${i}].name`, `${spec.name} is given twice`);
      const placeholder = placeholders[spec.name] ?? makePlaceholder(spec.name);
      if (!placeholder.startsWith(`${PREFIX}${spec.name}-`) || placeholder.match(PLACEHOLDER)?.[0] !== placeholder) {
        throw new VmboxError('internal', `the saved placeholder of secret ${spec.name} is malformed; the sandbox's state is damaged`);
      }
      const secret: Secret = Object.freeze({ name: spec.name, placeholder, hosts: Object.freeze(spec.hosts.map(normalizeHost)) });
      set.#values.set(spec.name, spec.value);
      set.#byPlaceholder.set(placeholder, secret);
      set.#secrets.push(secret);
    });
    return set;
  }

  get size(): number {
    return this.#secrets.length;
  }

  /** The guest's environment for its secrets: NAME → placeholder. It is also what `create` takes back. */
  placeholderEnv(): Record<string, string> {
    return Object.fromEntries(this.#secrets.map((s) => [s.name, s.placeholder]));
  }

  /** The secrets that may go to `hostname`. */
  forHost(hostname: string): Secret[] {
    return this.#secrets.filter((s) => s.hosts.some((p) => hostMatches(p, hostname)));
  }

  /** The secrets whose placeholders appear in `data`, each once, in order of first appearance. */
  findPlaceholders(data: string | Buffer): Secret[] {
    const text = typeof data === 'string' ? data : data.toString('latin1'); // latin1: one char a byte, ASCII intact
    if (!text.includes(PREFIX)) return [];
    const found = new Set<Secret>();
    for (const m of text.matchAll(PLACEHOLDER)) {
      const secret = this.#byPlaceholder.get(m[0]);
      if (secret) found.add(secret);
    }
    return [...found];
  }

  /** `text` with the placeholders of `secrets` replaced by their values; the caller has checked where it goes. */
  reveal(text: string, secrets: readonly Secret[]): string {
    let out = text;
    for (const s of secrets) out = out.replaceAll(s.placeholder, this.#values.get(s.name) ?? s.placeholder);
    return out;
  }

  /** `text` with every value replaced by its placeholder again, for what comes back from upstream. */
  conceal(text: string): string {
    let out = text;
    for (const s of this.#secrets) out = out.replaceAll(this.#values.get(s.name) ?? '', s.placeholder);
    return out;
  }

  /** A stream that masks every value with as many `*` bytes, so a body's length (and Content-Length) holds. */
  masker(): Transform {
    return new ValueMasker([...this.#values.values()].map((v) => Buffer.from(v)));
  }

  toJSON(): { placeholders: Record<string, string> } {
    return { placeholders: this.placeholderEnv() };
  }

  [inspect.custom](): string {
    return `SecretSet(${this.#secrets.map((s) => s.name).join(', ')})`;
  }
}

function checkSpec(spec: SecretSpec, i: number): void {
  if (!NAME.test(spec.name)) throw new SpecError(`secrets[${i}].name`, 'must be an environment variable name: letters, digits, _');
  if (spec.value.length < MIN_VALUE_LENGTH) {
    throw new SpecError(`secrets[${i}].value`, `must be at least ${MIN_VALUE_LENGTH} characters`);
  }
  // It goes into request lines and headers, which carry printable ASCII safely and nothing else.
  if (!/^[\x20-\x7e]*$/.test(spec.value)) throw new SpecError(`secrets[${i}].value`, 'must be printable ASCII');
  if (!spec.hosts.length) throw new SpecError(`secrets[${i}].hosts`, 'name at least one host the secret may go to');
  spec.hosts.forEach((host, j) => {
    const h = normalizeHost(host);
    if (isIP(h)) return;
    if (!DOMAIN.test(h)) throw new SpecError(`secrets[${i}].hosts[${j}]`, 'must be a domain, *.domain or an IP address');
    // `*.com` would hand the value to anyone with a certificate under a public suffix.
    if (h.startsWith('*.') && !h.slice(2).includes('.'))
      throw new SpecError(`secrets[${i}].hosts[${j}]`, 'a wildcard needs two labels after `*.`');
  });
}

/**
 * Masks values in a byte stream. A chunk's last bytes that could begin a value wait for the
 * next chunk, so a value cut across two is still seen whole; nothing else waits, so a stream
 * of events (server-sent events, say) flows as it comes.
 */
class ValueMasker extends Transform {
  private tail: Buffer = Buffer.alloc(0);

  constructor(private readonly values: Buffer[]) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    const buf = this.mask(this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk);
    const cut = buf.length - Math.max(0, ...this.values.map((v) => startOfValue(buf, v)));
    this.tail = buf.subarray(cut);
    if (cut) this.push(buf.subarray(0, cut));
    cb();
  }

  override _flush(cb: () => void): void {
    if (this.tail.length) this.push(this.tail);
    cb();
  }

  /** The chunk, or a masked copy: the chunk may be someone else's buffer. */
  private mask(chunk: Buffer): Buffer {
    let buf = chunk;
    for (const v of this.values) {
      for (let at = buf.indexOf(v); at !== -1; at = buf.indexOf(v, at + v.length)) {
        if (buf === chunk) buf = Buffer.from(chunk);
        buf.fill(0x2a, at, at + v.length);
      }
    }
    return buf;
  }
}

/** How many of `buf`'s last bytes are the first bytes of `v` (fewer than all of it). */
function startOfValue(buf: Buffer, v: Buffer): number {
  for (let n = Math.min(buf.length, v.length - 1); n > 0; n--) {
    if (buf[buf.length - n] === v[0] && buf.subarray(buf.length - n).equals(v.subarray(0, n))) return n;
  }
  return 0;
}
