import 'reflect-metadata';
import type { webcrypto as nodeWebcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

import { VmboxError } from '../errors.js';

type CryptoKey = nodeWebcrypto.CryptoKey;

const webcrypto = globalThis.crypto;
const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/**
 * A year, not a month: the guest trusts this certificate from its creation on, and a sandbox
 * the server keeps can be stopped and started again long after; the key never leaves the host.
 */
const CA_VALIDITY_MS = 365 * DAY;
const LEAF_VALIDITY_MS = 7 * DAY;
/** A leaf this close to its end is issued again rather than served. */
const LEAF_RENEW_MS = DAY;
/** Not-before lies this far back, so a guest clock a little behind the host's still accepts the certificate. */
const CLOCK_SKEW_MS = HOUR;
/** Leaves kept per sandbox; a guest naming more hosts than this gets some issued again. */
const LEAF_CACHE = 256;

/** The CA as the host's state keeps it: PKCS#8 PEM key and PEM certificate. */
export interface CaState {
  key: string;
  cert: string;
}

/** A server certificate for one host: its PKCS#8 PEM key and the PEM chain (leaf, then CA). */
export interface Leaf {
  key: string;
  cert: string;
}

interface CachedLeaf {
  leaf: Promise<Leaf>;
  notAfter: number;
}

/** Labels of letters, digits, hyphens and underscores (some internal names have them), 253 characters at most. */
const HOSTNAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * A sandbox's own certificate authority: the guest trusts its certificate, and the host
 * signs with it the leaves it shows the guest when it intercepts TLS to a secret's host.
 * ECDSA P-256 for fast signing; the extensions are the ones OpenSSL's strict mode asks for
 * (critical basic constraints and key usage, subject and authority key identifiers, a SAN).
 */
export class SandboxCa {
  private readonly leaves = new Map<string, CachedLeaf>();

  private constructor(
    private readonly key: CryptoKey,
    private readonly cert: x509.X509Certificate,
    private readonly keyPem: string,
  ) {}

  static async create(): Promise<SandboxCa> {
    const keys = await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: serialNumber(),
        // A random part, so two sandboxes' CAs are told apart in trust stores that key by subject.
        name: `CN=vmbox sandbox CA ${randomHex(4)}, O=vmbox`,
        notBefore: new Date(now - CLOCK_SKEW_MS),
        notAfter: new Date(now + CA_VALIDITY_MS),
        signingAlgorithm: SIGNING,
        keys,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
        ],
      },
      webcrypto,
    );
    return new SandboxCa(keys.privateKey, cert, await exportKey(keys.privateKey));
  }

  /** The CA saved by `toJSON`; refuses a key that does not belong to the certificate. */
  static async fromJSON(state: CaState): Promise<SandboxCa> {
    const cert = new x509.X509Certificate(state.cert);
    const der = x509.PemConverter.decodeFirst(state.key);
    const key = await webcrypto.subtle.importKey('pkcs8', der, EC_KEY, true, ['sign']);
    // The public half of a JWK private key is in it: compare it with the certificate's.
    const jwk = await webcrypto.subtle.exportKey('jwk', key);
    const certJwk = await webcrypto.subtle.exportKey('jwk', await cert.publicKey.export(EC_KEY, ['verify'], webcrypto));
    if (jwk.x !== certJwk.x || jwk.y !== certJwk.y) {
      throw new VmboxError('internal', "the sandbox CA's saved key does not match its certificate; the sandbox's state is damaged");
    }
    return new SandboxCa(key, cert, state.key);
  }

  /** What the guest's trust store gets. */
  get certificatePem(): string {
    return this.cert.toString('pem');
  }

  toJSON(): CaState {
    return { key: this.keyPem, cert: this.certificatePem };
  }

  /** A leaf for `hostname` (a DNS name or an IP address), issued once and kept while it is fresh. */
  leafFor(hostname: string): Promise<Leaf> {
    const name = hostname.toLowerCase().replace(/\.$/, '');
    const hit = this.leaves.get(name);
    this.leaves.delete(name); // set again below, at the back: the cache drops the least recently used
    const entry = hit && hit.notAfter - Date.now() > LEAF_RENEW_MS ? hit : this.issue(name);
    this.leaves.set(name, entry);
    const oldest = this.leaves.keys().next().value;
    if (this.leaves.size > LEAF_CACHE && oldest !== undefined) this.leaves.delete(oldest);
    return entry.leaf;
  }

  private issue(name: string): CachedLeaf {
    const notAfter = Math.min(Date.now() + LEAF_VALIDITY_MS, this.cert.notAfter.getTime());
    const entry = { notAfter, leaf: this.sign(name, notAfter) };
    entry.leaf.catch(() => {
      if (this.leaves.get(name) === entry) this.leaves.delete(name);
    });
    return entry;
  }

  private async sign(name: string, notAfter: number): Promise<Leaf> {
    if (!isIP(name) && !HOSTNAME.test(name)) {
      throw new VmboxError('invalidArgument', `cannot issue a certificate for ${JSON.stringify(name)}: not a host name or IP address`);
    }
    if (notAfter <= Date.now()) {
      throw new VmboxError('internal', `the sandbox's CA expired on ${this.cert.notAfter.toISOString()}: create the sandbox again`);
    }
    const keys = await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
    const now = Date.now();
    // A common name holds 64 characters at most; past that the subject is empty and the SAN critical (RFC 5280 4.2.1.6).
    const cn = name.length <= 64;
    const authorityKeyId = this.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serialNumber(),
        subject: cn ? `CN=${name}` : '',
        issuer: this.cert.subject,
        notBefore: new Date(now - CLOCK_SKEW_MS),
        notAfter: new Date(notAfter),
        signingAlgorithm: SIGNING,
        publicKey: keys.publicKey,
        signingKey: this.key,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: isIP(name) ? 'ip' : 'dns', value: name }], !cn),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
          ...(authorityKeyId ? [new x509.AuthorityKeyIdentifierExtension(authorityKeyId)] : []),
        ],
      },
      webcrypto,
    );
    return { key: await exportKey(keys.privateKey), cert: `${cert.toString('pem')}\n${this.certificatePem}` };
  }
}

async function exportKey(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function randomHex(bytes: number): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(bytes))).toString('hex');
}

/** 16 random bytes, first bit clear so the DER integer is positive, as RFC 5280 4.1.2.2 asks. */
function serialNumber(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(b).toString('hex');
}
