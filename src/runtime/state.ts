import Database from 'better-sqlite3';
import { VmboxError } from '../errors.js';
import type { ResolvedImage } from '../images/catalog.js';
import type { SandboxSpec } from '../spec/sandbox.js';
import type { SandboxOrigin, SandboxState } from '../spec/sandboxes.js';
import type { SnapshotRecord } from './snapshot-record.js';

/** One sandbox as the state database keeps it. */
export interface SandboxRecord {
  id: string;
  name: string;
  spec: SandboxSpec;
  image: ResolvedImage;
  state: SandboxState;
  /** Why it is stopped or failed. */
  reason: string | null;
  /** QEMU's pid while a VM exists. */
  pid: number | null;
  createdAt: number;
  startedAt: number | null;
  stoppedAt: number | null;
  /** Set while the sandbox is being removed: a crash mid-way is finished at start-up. */
  removing: boolean;
  /** `connection`: made for one command and owned by the client's connection (`vmbox run`), which a restart ends. */
  owner: 'connection' | null;
  /** How its VM first started, and the template or snapshot its disk (and memory) is layered on. */
  origin: SandboxOrigin;
  /** The API key that made it (the E2B API), which alone sees it unless an admin key asks. */
  apiKey: string | null;
}

/** An API key as kept: its hash only, never the key. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  hash: string;
  admin: boolean;
  createdAt: number;
  lastUsedAt: number | null;
}

/** A named volume: a directory under $VMBOX_HOME/volumes that outlives the sandboxes mounting it. */
export interface VolumeRecord {
  name: string;
  /** directory: shared by any number of sandboxes (9p); disk: an ext4 image, one writer at a time (virtio-blk). */
  kind: 'directory' | 'disk';
  /** A disk volume's capacity. */
  sizeMib?: number;
  /** A directory volume's budget: what its sandboxes may write, all together. */
  quotaMib?: number;
  labels: Record<string, string>;
  createdAt: number;
}

export interface EventRecord {
  sandboxId: string;
  at: number;
  kind: string;
  message: string;
}

/** Schema versions, applied in order; `user_version` records how far a database is. */
const migrations = [
  `CREATE TABLE sandboxes (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     spec TEXT NOT NULL,
     image TEXT NOT NULL,
     state TEXT NOT NULL,
     reason TEXT,
     pid INTEGER,
     created_at INTEGER NOT NULL,
     started_at INTEGER,
     stopped_at INTEGER,
     removing INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     sandbox_id TEXT NOT NULL,
     at INTEGER NOT NULL,
     kind TEXT NOT NULL,
     message TEXT NOT NULL
   );
   CREATE INDEX events_by_sandbox ON events (sandbox_id, seq);`,
  'ALTER TABLE sandboxes ADD COLUMN owner TEXT;',
  `ALTER TABLE sandboxes ADD COLUMN origin TEXT;
   CREATE TABLE snapshots (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     state TEXT NOT NULL,
     record TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );`,
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     admin INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     last_used_at INTEGER
   );
   ALTER TABLE sandboxes ADD COLUMN api_key TEXT;`,
  `CREATE TABLE volumes (
     name TEXT PRIMARY KEY,
     record TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );`,
];

interface Row {
  id: string;
  name: string;
  spec: string;
  image: string;
  state: SandboxState;
  reason: string | null;
  pid: number | null;
  created_at: number;
  started_at: number | null;
  stopped_at: number | null;
  removing: number;
  owner: string | null;
  origin: string | null;
  api_key: string | null;
}

const fromRow = (r: Row): SandboxRecord => ({
  id: r.id,
  name: r.name,
  spec: JSON.parse(r.spec),
  image: JSON.parse(r.image),
  state: r.state,
  reason: r.reason,
  pid: r.pid,
  createdAt: r.created_at,
  startedAt: r.started_at,
  stoppedAt: r.stopped_at,
  removing: r.removing !== 0,
  owner: r.owner === 'connection' ? 'connection' : null,
  origin: r.origin ? JSON.parse(r.origin) : { start: 'cold' },
  apiKey: r.api_key,
});

interface ApiKeyRow {
  id: string;
  name: string;
  hash: string;
  admin: number;
  created_at: number;
  last_used_at: number | null;
}

const fromKeyRow = (r: ApiKeyRow): ApiKeyRecord => ({
  id: r.id,
  name: r.name,
  hash: r.hash,
  admin: r.admin !== 0,
  createdAt: r.created_at,
  lastUsedAt: r.last_used_at,
});

/** The server's state: sandboxes and their events, in SQLite (WAL), written by the server alone. */
export class StateDb {
  private readonly db: Database.Database;

  constructor(path: string) {
    try {
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
      this.migrate();
    } catch (err) {
      throw new VmboxError('hostSetup', `cannot open the state database ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > migrations.length) {
      throw new VmboxError('hostSetup', `it was written by a newer vmbox (schema ${version}, this one knows ${migrations.length})`);
    }
    for (let v = version; v < migrations.length; v++) {
      this.db.transaction(() => {
        this.db.exec(migrations[v] as string);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /** Inserts a new sandbox; the unique name makes concurrent creates of one name fail but one. */
  insert(rec: SandboxRecord): void {
    try {
      this.db
        .prepare(
          `INSERT INTO sandboxes (id, name, spec, image, state, reason, pid, created_at, started_at, stopped_at, removing, owner, origin, api_key)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          rec.id,
          rec.name,
          JSON.stringify(rec.spec),
          JSON.stringify(rec.image),
          rec.state,
          rec.reason,
          rec.pid,
          rec.createdAt,
          rec.startedAt,
          rec.stoppedAt,
          rec.removing ? 1 : 0,
          rec.owner,
          JSON.stringify(rec.origin),
          rec.apiKey,
        );
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new VmboxError('sandboxAlreadyExists', `a sandbox named ${rec.name} already exists: pick another name or remove it first`);
      }
      throw err;
    }
  }

  update(
    id: string,
    fields: Partial<Pick<SandboxRecord, 'state' | 'reason' | 'pid' | 'startedAt' | 'stoppedAt' | 'removing' | 'spec' | 'origin'>>,
  ): void {
    const cols: Record<string, unknown> = {
      spec: fields.spec === undefined ? undefined : JSON.stringify(fields.spec),
      state: fields.state,
      reason: fields.reason,
      pid: fields.pid,
      started_at: fields.startedAt,
      stopped_at: fields.stoppedAt,
      removing: fields.removing === undefined ? undefined : fields.removing ? 1 : 0,
      origin: fields.origin === undefined ? undefined : JSON.stringify(fields.origin),
    };
    const set = Object.entries(cols).filter(([, v]) => v !== undefined);
    if (set.length === 0) return;
    this.db.prepare(`UPDATE sandboxes SET ${set.map(([k]) => `${k} = ?`).join(', ')} WHERE id = ?`).run(...set.map(([, v]) => v), id);
  }

  get(id: string): SandboxRecord | undefined {
    const r = this.db.prepare('SELECT * FROM sandboxes WHERE id = ?').get(id) as Row | undefined;
    return r && fromRow(r);
  }

  /** By id, name, or a unique id prefix. */
  find(ref: string): SandboxRecord | undefined {
    const r = (this.db.prepare('SELECT * FROM sandboxes WHERE id = ? OR name = ?').get(ref, ref) ??
      (ref.length >= 4 ? this.db.prepare("SELECT * FROM sandboxes WHERE id LIKE ? || '%'").all(ref) : [])) as Row | Row[] | undefined;
    if (Array.isArray(r)) return r.length === 1 ? fromRow(r[0] as Row) : undefined;
    return r && fromRow(r);
  }

  list(): SandboxRecord[] {
    return (this.db.prepare('SELECT * FROM sandboxes ORDER BY created_at').all() as Row[]).map(fromRow);
  }

  delete(id: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM sandboxes WHERE id = ?').run(id);
      this.db.prepare('DELETE FROM events WHERE sandbox_id = ?').run(id);
    })();
  }

  addEvent(sandboxId: string, kind: string, message: string, at = Date.now()): void {
    this.db.prepare('INSERT INTO events (sandbox_id, at, kind, message) VALUES (?, ?, ?, ?)').run(sandboxId, at, kind, message);
  }

  events(sandboxId: string, limit = 100): EventRecord[] {
    return (
      this.db
        .prepare('SELECT sandbox_id, at, kind, message FROM events WHERE sandbox_id = ? ORDER BY seq DESC LIMIT ?')
        .all(sandboxId, limit) as { sandbox_id: string; at: number; kind: string; message: string }[]
    )
      .reverse()
      .map((e) => ({ sandboxId: e.sandbox_id, at: e.at, kind: e.kind, message: e.message }));
  }

  /** Inserts a snapshot being made (state `creating`); the unique name makes a second one of that name fail. */
  insertSnapshot(rec: SnapshotRecord): void {
    try {
      this.db
        .prepare('INSERT INTO snapshots (id, name, state, record, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(rec.id, rec.name, rec.state, JSON.stringify(rec), rec.createdAt);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new VmboxError(
          'snapshotAlreadyExists',
          `a snapshot named ${rec.name} already exists: pick another name, or --force to replace it`,
        );
      }
      throw err;
    }
  }

  updateSnapshot(rec: SnapshotRecord): void {
    this.db.prepare('UPDATE snapshots SET state = ?, record = ? WHERE id = ?').run(rec.state, JSON.stringify(rec), rec.id);
  }

  snapshot(ref: string): SnapshotRecord | undefined {
    const r = (this.db.prepare('SELECT record FROM snapshots WHERE id = ? OR name = ?').get(ref, ref) ??
      (ref.length >= 4 ? this.db.prepare("SELECT record FROM snapshots WHERE id LIKE ? || '%'").all(ref) : [])) as
      | { record: string }
      | { record: string }[]
      | undefined;
    if (Array.isArray(r)) return r.length === 1 ? JSON.parse((r[0] as { record: string }).record) : undefined;
    return r && JSON.parse(r.record);
  }

  snapshots(): SnapshotRecord[] {
    return (this.db.prepare('SELECT record FROM snapshots ORDER BY created_at').all() as { record: string }[]).map((r) =>
      JSON.parse(r.record),
    );
  }

  /** Claims a volume's name; a taken name fails (alreadyExists). */
  insertVolume(rec: VolumeRecord): void {
    try {
      this.db.prepare('INSERT INTO volumes (name, record, created_at) VALUES (?, ?, ?)').run(rec.name, JSON.stringify(rec), rec.createdAt);
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT'))
        throw new VmboxError('alreadyExists', `a volume named ${rec.name} already exists: pick another name, or mount it`);
      throw err;
    }
  }

  volume(name: string): VolumeRecord | undefined {
    const r = this.db.prepare('SELECT record FROM volumes WHERE name = ?').get(name) as { record: string } | undefined;
    return r && JSON.parse(r.record);
  }

  volumes(): VolumeRecord[] {
    return (this.db.prepare('SELECT record FROM volumes ORDER BY created_at').all() as { record: string }[]).map((r) =>
      JSON.parse(r.record),
    );
  }

  deleteVolume(name: string): void {
    this.db.prepare('DELETE FROM volumes WHERE name = ?').run(name);
  }

  deleteSnapshot(id: string): void {
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  }

  insertApiKey(k: ApiKeyRecord): void {
    this.db
      .prepare('INSERT INTO api_keys (id, name, hash, admin, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(k.id, k.name, k.hash, k.admin ? 1 : 0, k.createdAt, k.lastUsedAt);
  }

  apiKeys(): ApiKeyRecord[] {
    return (this.db.prepare('SELECT * FROM api_keys ORDER BY created_at').all() as ApiKeyRow[]).map(fromKeyRow);
  }

  apiKeyByHash(hash: string): ApiKeyRecord | undefined {
    const r = this.db.prepare('SELECT * FROM api_keys WHERE hash = ?').get(hash) as ApiKeyRow | undefined;
    return r && fromKeyRow(r);
  }

  touchApiKey(id: string, at = Date.now()): void {
    this.db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(at, id);
  }

  /** Removes a key by id or name; false when there is none. */
  deleteApiKey(ref: string): boolean {
    return this.db.prepare('DELETE FROM api_keys WHERE id = ? OR name = ?').run(ref, ref).changes > 0;
  }

  close(): void {
    this.db.close();
  }
}
