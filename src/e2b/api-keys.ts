import { createHash, randomBytes } from 'node:crypto';
import { VmboxError } from '../errors.js';
import type { ApiKeyRecord, StateDb } from '../runtime/state.js';
import type { ApiKeyCreate, ApiKeyCreated, ApiKeyInfo } from '../spec/api-keys.js';

/**
 * API keys for the E2B API: `e2b_` and 40 hex digits (the form E2B's SDKs
 * accept), kept as their sha256 only, so a stolen database holds no key.
 */
export class ApiKeys {
  constructor(private readonly db: StateDb) {}

  create(req: ApiKeyCreate = {}): ApiKeyCreated {
    const key = `e2b_${randomBytes(20).toString('hex')}`;
    const id = randomBytes(6).toString('hex');
    const name = req.name ?? `key-${id}`;
    if (this.db.apiKeys().some((k) => k.name === name)) {
      throw new VmboxError(
        'alreadyExists',
        `an API key named ${name} exists: pick another name, or remove it first (vmbox api-key rm ${name})`,
      );
    }
    const rec: ApiKeyRecord = { id, name, hash: hashOf(key), admin: req.admin ?? false, createdAt: Date.now(), lastUsedAt: null };
    this.db.insertApiKey(rec);
    return { ...info(rec), key };
  }

  list(): ApiKeyInfo[] {
    return this.db.apiKeys().map(info);
  }

  remove(ref: string): void {
    if (!this.db.deleteApiKey(ref)) throw new VmboxError('notFound', `no API key named or with id ${ref}: see vmbox api-key ls`);
  }

  /** The key's record when `key` is one of ours (its use is noted). */
  verify(key: string | undefined): ApiKeyRecord | undefined {
    if (!key || !/^e2b_[0-9a-f]{40}$/.test(key)) return undefined;
    const rec = this.db.apiKeyByHash(hashOf(key));
    if (rec) this.db.touchApiKey(rec.id);
    return rec;
  }
}

function hashOf(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

function info(r: ApiKeyRecord): ApiKeyInfo {
  return { id: r.id, name: r.name, admin: r.admin, createdAt: r.createdAt, lastUsedAt: r.lastUsedAt };
}
