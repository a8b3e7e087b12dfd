import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { httpStatus, type VmboxError } from '../../src/errors.js';
import { checkTransition } from '../../src/runtime/lifecycle.js';
import { effectiveSources, SandboxLog } from '../../src/runtime/logs.js';
import { type SandboxRecord, StateDb } from '../../src/runtime/state.js';

const dir = mkdtempSync(join(tmpdir(), 'vmbox-state-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const record = (id: string, name: string): SandboxRecord => ({
  id,
  name,
  spec: { image: 'base', cpus: 1, memoryMib: 128, env: {}, name },
  image: { name: 'base', rootfsPath: '/x', config: { env: [], workingDir: '/', user: 'root', entrypoint: [], cmd: [] } },
  state: 'creating',
  reason: null,
  pid: null,
  createdAt: Date.now(),
  startedAt: null,
  stoppedAt: null,
  removing: false,
  owner: null,
  origin: { start: 'cold' },
  apiKey: null,
});

describe('the state database', () => {
  it('migrates a new file to the current schema, in WAL mode', () => {
    const path = join(dir, 'a.db');
    new StateDb(path).close();
    const raw = new Database(path);
    assert.equal(raw.pragma('user_version', { simple: true }), 5);
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    raw.close();
  });

  it('keeps a sandbox written before owners existed, with none, and records a run’s owner', () => {
    const path = join(dir, 'v1.db');
    const v1 = new StateDb(path);
    v1.insert(record('old', 'old'));
    v1.close();
    // Back to schema 1: no owner column, as an older vmbox left it.
    const raw = new Database(path);
    raw.exec(
      'ALTER TABLE sandboxes DROP COLUMN owner; ALTER TABLE sandboxes DROP COLUMN origin; ALTER TABLE sandboxes DROP COLUMN api_key; DROP TABLE snapshots; DROP TABLE api_keys; DROP TABLE volumes;',
    );
    raw.pragma('user_version = 1');
    raw.close();
    const db = new StateDb(path);
    assert.equal(db.get('old')?.owner, null);
    // Written before origins existed: it booted cold.
    assert.deepEqual(db.get('old')?.origin, { start: 'cold' });
    db.insert({ ...record('run', 'run'), owner: 'connection' });
    assert.equal(db.get('run')?.owner, 'connection');
    db.close();
  });

  it('refuses a database from a newer vmbox', () => {
    const path = join(dir, 'newer.db');
    const raw = new Database(path);
    raw.pragma('user_version = 99');
    raw.close();
    assert.throws(() => new StateDb(path), /newer vmbox/);
  });

  it('keeps names unique, finds by id, name or prefix, and round-trips records', () => {
    const db = new StateDb(join(dir, 'b.db'));
    db.insert(record('aaaa1111', 'one'));
    assert.throws(
      () => db.insert(record('bbbb2222', 'one')),
      (e: VmboxError) => e.code === 'sandboxAlreadyExists',
    );
    db.insert(record('aaaa2222', 'two'));
    assert.equal(db.find('one')?.id, 'aaaa1111');
    assert.equal(db.find('aaaa2222')?.name, 'two');
    assert.equal(db.find('aaaa2')?.name, 'two', 'a unique id prefix');
    assert.equal(db.find('aaaa'), undefined, 'an ambiguous prefix finds nothing');
    db.update('aaaa1111', { state: 'running', pid: 42, startedAt: 5 });
    const r = db.get('aaaa1111');
    assert.equal(r?.state, 'running');
    assert.equal(r?.pid, 42);
    assert.deepEqual(r?.spec, record('aaaa1111', 'one').spec);
    db.addEvent('aaaa1111', 'system', 'hello');
    assert.deepEqual(
      db.events('aaaa1111').map((e) => e.message),
      ['hello'],
    );
    db.delete('aaaa1111');
    assert.equal(db.get('aaaa1111'), undefined);
    assert.deepEqual(db.events('aaaa1111'), []);
    db.close();
  });
});

describe('lifecycle', () => {
  it('names the current state when an operation is not allowed', () => {
    assert.throws(() => checkTransition('dev', 'stopped', 'exec'), /cannot exec sandbox dev: it is stopped \(start it first\)/);
    assert.throws(() => checkTransition('dev', 'creating', 'stop'), /it is creating \(wait until it settles\)/);
    assert.throws(
      () => checkTransition('dev', 'running', 'remove'),
      (e: VmboxError) => e.code === 'invalidState',
    );
    checkTransition('dev', 'failed', 'start');
    assert.equal(httpStatus('invalidState'), 409);
    assert.equal(httpStatus('sandboxNotFound'), 404);
  });
});

describe('sandbox logs', () => {
  it('filters by source (empty = the commands’ output) and time, and rotates by size', () => {
    const d = mkdtempSync(join(dir, 'log-'));
    const log = new SandboxLog(d, 400);
    const seen: string[] = [];
    log.subscribe((e) => seen.push(e.source));
    log.append('system', 'created');
    log.append('stdout', Buffer.from('out\n'));
    log.append('stderr', 'err\n');
    assert.deepEqual(
      log.read().map((e) => e.text),
      ['out\n', 'err\n'],
    );
    assert.deepEqual(
      log.read({ sources: ['system'] }).map((e) => e.text),
      ['created'],
    );
    assert.deepEqual(log.read({ sinceMs: Date.now() + 1000 }), []);
    for (let i = 0; i < 20; i++) log.append('stdout', `line ${i}\n`);
    assert.deepEqual(readdirSync(d).sort(), ['logs.1.ndjson', 'logs.ndjson', 'system.ndjson']);
    const kept = log.read();
    assert.ok(kept.length < 22, 'old entries rotated away');
    assert.equal(kept.at(-1)?.text, 'line 19\n');
    assert.equal(log.read({ tail: 2 }).length, 2);
    assert.equal(seen.length, 23);
    assert.deepEqual([...effectiveSources([])].sort(), ['output', 'stderr', 'stdout']);
    log.close();
  });

  it('keeps vmbox’s own lines however much the commands print, in time order with the output', () => {
    const d = mkdtempSync(join(dir, 'log-'));
    const log = new SandboxLog(d, 400);
    log.append('system', 'created');
    log.append('stdout', 'first\n');
    for (let i = 0; i < 100; i++) log.append('stdout', `line ${i}\n`);
    log.append('system', 'stopped: out of memory');
    assert.deepEqual(
      log.read({ sources: ['system'] }).map((e) => e.text),
      ['created', 'stopped: out of memory'],
    );
    const all = log.read({ sources: ['system', 'stdout'] });
    assert.equal(all.at(-1)?.text, 'stopped: out of memory');
    assert.ok(all.every((e, i) => i === 0 || (all[i - 1] as { t: number }).t <= e.t));
    log.close();
  });
});
