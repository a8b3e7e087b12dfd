import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type SandboxRecord, StateDb } from '../../src/runtime/state.js';
import { Templates, warmRefusal } from '../../src/runtime/templates.js';
import type { VmmProvider } from '../../src/vmm/provider.js';

const home = mkdtempSync(join(tmpdir(), 'vmbox-templates-'));
const previous = process.env.VMBOX_HOME;
let db: StateDb;
before(() => {
  process.env.VMBOX_HOME = home;
  db = new StateDb(join(home, 'state.db'));
});
after(() => {
  db.close();
  rmSync(home, { recursive: true, force: true });
  if (previous === undefined) delete process.env.VMBOX_HOME;
  else process.env.VMBOX_HOME = previous;
});

/** A template's directory as a build leaves it (the files' content does not matter here). */
function template(key: string, disk: string, kernel = 'k1', agent = 'a1'): void {
  const dir = join(home, 'templates', key);
  mkdirSync(dir, { recursive: true });
  for (const f of ['rootfs.qcow2', 'memory', 'vm.state', 'empty-overlay.qcow2']) writeFileSync(join(dir, f), '');
  const info = { key, image: 'base', cpus: 1, memoryMib: 256, disk, kernel, agent, createdAt: 0, bootMs: 0, sizeBytes: 0, usedBy: [] };
  writeFileSync(join(dir, 'template.json'), JSON.stringify(info));
}

const sandboxOn = (key: string): SandboxRecord => ({
  id: 'warmone',
  name: 'warm-one',
  spec: { image: 'base', cpus: 1, memoryMib: 256, env: {}, name: 'warm-one' },
  image: { name: 'base', rootfsPath: '/images/gone.ext4', config: { env: [], workingDir: '/', user: 'root', entrypoint: [], cmd: [] } },
  state: 'running',
  reason: null,
  pid: null,
  createdAt: 0,
  startedAt: null,
  stoppedAt: null,
  removing: false,
  owner: null,
  origin: { start: 'warm', template: key },
  apiKey: null,
});

describe('templates', () => {
  it('are pruned with their image, or when their kernel or agent is not the current one, never while in use', () => {
    template('aaaaaaaaaaaaaaaa', '/images/kept.ext4');
    template('bbbbbbbbbbbbbbbb', '/images/gone.ext4');
    template('cccccccccccccccc', '/images/kept.ext4', 'k0');
    template('dddddddddddddddd', '/images/gone.ext4');
    db.insert(sandboxOn('dddddddddddddddd'));
    const t = new Templates(db, {} as VmmProvider);
    assert.deepEqual(t.usedBy('dddddddddddddddd'), ['warm-one']);
    assert.throws(() => t.remove('dddddddddddddddd'), /is used by warm-one/);
    const kept = t.prune(new Set(['/images/kept.ext4']), { kernel: 'k1', agent: 'a1' });
    assert.deepEqual(readdirSync(join(home, 'templates')).sort(), ['aaaaaaaaaaaaaaaa', 'dddddddddddddddd']);
    // The disk of the one in use is reported kept, so the image's disk it is over stays too.
    assert.deepEqual(kept.sort(), ['/images/gone.ext4', '/images/kept.ext4']);
    t.remove('aaaaaaaaaaaaaaaa');
    assert.ok(!existsSync(join(home, 'templates', 'aaaaaaaaaaaaaaaa')));
  });

  it('serve every spec but one that changes what the guest boots with', () => {
    const spec = { image: 'base', cpus: 1, memoryMib: 256, env: {} };
    assert.equal(warmRefusal(spec), undefined);
    assert.match(warmRefusal({ ...spec, diskMib: 4096 }) ?? '', /diskMib/);
  });
});
