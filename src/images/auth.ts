import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface Credentials {
  username: string;
  password: string;
}

/**
 * Registry credentials: `VMBOX_REGISTRY_AUTH` (`host=user:password`, comma-separated)
 * first, then `~/.docker/config.json`'s `auths` (Docker Hub's key is its index URL).
 */
export function credentialsFor(registry: string): Credentials | undefined {
  for (const entry of (process.env.VMBOX_REGISTRY_AUTH ?? '').split(',').filter(Boolean)) {
    const eq = entry.indexOf('=');
    const colon = entry.indexOf(':', eq);
    if (eq > 0 && colon > eq && entry.slice(0, eq) === registry) {
      return { username: entry.slice(eq + 1, colon), password: entry.slice(colon + 1) };
    }
  }
  try {
    const config = JSON.parse(readFileSync(join(homedir(), '.docker', 'config.json'), 'utf8')) as {
      auths?: Record<string, { auth?: string }>;
    };
    const keys =
      registry === 'docker.io' ? ['https://index.docker.io/v1/', 'docker.io', 'index.docker.io'] : [registry, `https://${registry}`];
    for (const k of keys) {
      const auth = config.auths?.[k]?.auth;
      if (!auth) continue;
      const plain = Buffer.from(auth, 'base64').toString('utf8');
      const i = plain.indexOf(':');
      if (i > 0) return { username: plain.slice(0, i), password: plain.slice(i + 1) };
    }
  } catch {}
  return undefined;
}

export const basicHeader = (c: Credentials) => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;

/** Parses `Bearer realm="…",service="…",scope="…"` into its scheme and parameters. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const space = header.indexOf(' ');
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  const re = /(\w+)="([^"]*)"/g;
  for (let m = re.exec(header); m; m = re.exec(header)) params[(m[1] as string).toLowerCase()] = m[2] as string;
  return { scheme, params };
}
