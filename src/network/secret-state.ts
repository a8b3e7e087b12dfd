import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Secret } from '../spec/network.js';
import { type CaState, SandboxCa } from './ca.js';
import { SecretSet } from './secrets.js';

/** Where the guest finds the sandbox's CA, and the bundle it is added to. */
export const GUEST_CA_PATH = '/etc/vmbox/ca.pem';
export const GUEST_BUNDLE_PATH = '/etc/ssl/certs/ca-certificates.crt';

/** What a sandbox with secrets keeps on the host (its directory, mode 0600): never the values. */
interface SavedState {
  ca: CaState;
  placeholders: Record<string, string>;
}

const FILE = 'secrets-state.json';

/** A sandbox's secrets as the host serves them: the values (from its spec), placeholders, CA. */
export interface SandboxSecrets {
  set: SecretSet;
  ca: SandboxCa;
}

/**
 * Makes a new sandbox's placeholders and CA, saves them in its directory, and
 * returns the environment its commands get: each NAME as its placeholder, and the
 * usual variables that point TLS clients at a bundle holding the sandbox's CA.
 */
export async function prepareSecrets(dir: string, secrets: Secret[]): Promise<Record<string, string>> {
  const set = SecretSet.create(secrets);
  const ca = await SandboxCa.create();
  const state: SavedState = { ca: ca.toJSON(), placeholders: set.placeholderEnv() };
  writeFileSync(join(dir, FILE), JSON.stringify(state), { mode: 0o600 });
  return {
    ...set.placeholderEnv(),
    SSL_CERT_FILE: GUEST_BUNDLE_PATH,
    REQUESTS_CA_BUNDLE: GUEST_BUNDLE_PATH,
    NODE_EXTRA_CA_CERTS: GUEST_CA_PATH,
  };
}

/** A sandbox's saved secrets state with the values from its spec. */
export async function loadSecrets(dir: string, secrets: Secret[]): Promise<SandboxSecrets> {
  const state = JSON.parse(readFileSync(join(dir, FILE), 'utf8')) as SavedState;
  return { set: SecretSet.create(secrets, state.placeholders), ca: await SandboxCa.fromJSON(state.ca) };
}
