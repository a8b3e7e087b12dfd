import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '../fixtures/home.js';
import { type TestRuntime, testRuntime } from '../fixtures/runtime.js';

let rt: TestRuntime;

before(async () => {
  rt = await testRuntime();
});

after(async () => {
  await rt?.close();
});

const run = async (id: string, script: string) => {
  let stdout = '';
  const p = rt.manager.processes.exec(
    id,
    ['sh', '-c', script],
    {},
    {
      onStdout: (d) => {
        stdout += d.toString();
      },
    },
  );
  const exit = await p.exit;
  assert.equal(exit.exitCode, 0, script);
  return stdout.trim();
};
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('warm start', () => {
  test('the first create boots and makes the template; the next ones restore it, each itself', async () => {
    const first = await rt.create({ memoryMib: 256 });
    assert.equal(rt.manager.get(first.id).origin.start, 'cold');
    assert.match(rt.manager.get(first.id).origin.coldReason ?? '', /no template/);
    // Made in the background, while the first sandbox runs.
    assert.ok(await waitFor(() => rt.manager.templates.list().length === 1, 60_000), 'a template is made');
    const [tpl] = rt.manager.templates.list();
    assert.equal(tpl?.memoryMib, 256);
    const memBefore = sha(`${rt.home.home}/templates/${tpl?.key}/memory`);

    const a = await rt.manager.create({ memoryMib: 256, name: 'warm-a' });
    const b = await rt.manager.create({ memoryMib: 256, name: 'warm-b', env: { WHO: 'b' } });
    for (const s of [a, b]) assert.deepEqual(s.origin, { start: 'warm', template: tpl?.key });
    const facts = await Promise.all(
      [a, b].map((s) => run(s.id, 'head -c 16 /dev/urandom | od -An -tx1; hostname; cat /proc/sys/kernel/random/boot_id; date +%s')),
    );
    const [fa, fb] = facts.map((f) => f.split('\n')) as [string[], string[]];
    assert.notEqual(fa[0], fb[0], 'random bytes differ');
    assert.equal(fa[1], `vmbox-${a.id.slice(0, 8)}`);
    assert.equal(fb[1], `vmbox-${b.id.slice(0, 8)}`);
    assert.notEqual(fa[2], fb[2], 'boot ids differ');
    for (const f of [fa, fb]) assert.ok(Math.abs(Number(f[3]) - Date.now() / 1000) < 3, `clock ${f[3]}`);
    assert.equal(await run(b.id, 'echo $WHO'), 'b', 'the spec’s environment reaches commands');
    // Each has its own disk and memory: writes stay in the one that made them, and never reach the template.
    await run(a.id, 'echo a > /root/mine; head -c 30000000 /dev/urandom > /dev/shm/fill; sync');
    assert.equal(await run(b.id, 'cat /root/mine 2>/dev/null || echo none'), 'none');
    assert.equal(sha(`${rt.home.home}/templates/${tpl?.key}/memory`), memBefore, "the template's memory file is unchanged");

    // A warm sandbox pauses, resumes and snapshots like any other.
    await rt.manager.pause(a.id);
    await rt.manager.resume(a.id);
    assert.equal(await run(a.id, 'cat /root/mine; wc -c < /dev/shm/fill'), 'a\n30000000');
    const { snapshot } = await rt.manager.snapshots.create(a.id, { name: 'from-warm' });
    assert.equal(snapshot.template, tpl?.key);
    const c = await rt.manager.create({ snapshot: 'from-warm' });
    assert.equal(await run(c.id, 'cat /root/mine'), 'a');

    // In use: the template stays while anything is layered on it.
    assert.throws(() => rt.manager.templates.remove(tpl?.key as string), /is used by/);
    for (const s of [a, b, c, first]) await rt.manager.remove(s.id, { force: true });
    rt.manager.snapshots.remove('from-warm');
    rt.manager.templates.remove(tpl?.key as string);
    assert.equal(rt.manager.templates.list().length, 0);
  });

  test('what a template cannot serve boots cold and says why; warm=false boots', async () => {
    await rt.manager.warmTemplate('base', { memoryMib: 256 });
    const sized = await rt.manager.create({ memoryMib: 256, diskMib: 4096 });
    assert.equal(sized.origin.start, 'cold');
    assert.match(sized.origin.coldReason ?? '', /diskMib/);
    const asked = await rt.manager.create({ memoryMib: 256 }, { pull: { warm: false } });
    assert.deepEqual(asked.origin, { start: 'cold' });
    assert.equal(await run(sized.id, "df -m / | awk 'NR==2 {print ($2 > 3000)}'"), '1', 'the larger disk is there');
    for (const s of [sized, asked]) await rt.manager.remove(s.id, { force: true });
  });
});
