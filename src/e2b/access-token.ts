import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * A sandbox's envd access token: an HMAC of its id under the server's E2B
 * secret ($VMBOX_HOME/e2b.secret), so tokens survive restarts and need no
 * storage. E2B's SDKs send it as `X-Access-Token`, or sign file URLs with it.
 */
export function accessToken(secret: Buffer, sandboxId: string): string {
  return createHmac('sha256', secret).update(sandboxId).digest('hex');
}

export function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * E2B's signed file URL: `v1_` + base64 sha256 of `path:operation:user:token`
 * (`:expiration` appended when it expires), trailing `=` cut, as its SDKs make it.
 */
export function fileSignature(token: string, o: { path: string; operation: 'read' | 'write'; user: string; expiration?: number }): string {
  const raw = [o.path, o.operation, o.user, token, ...(o.expiration === undefined ? [] : [String(o.expiration)])].join(':');
  return `v1_${createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')}`;
}
