import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isolatedHome, waitFor } from '../fixtures/home.js';

/** The interactive CLI verbs, driven through a real terminal (tmux) and real files. */
const vmbox = fileURLToPath(new URL('../../vmbox', import.meta.url));
const t = isolatedHome();
const session = `vmbox-test-${process.pid}`;
const run = (args: string[]) => spawnSync(vmbox, args, { encoding: 'utf8', env: t.env });
const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-t', session, '-p').stdout;
const scratch = mkdtempSync(join(tmpdir(), 'vmbox-cp-'));

before(() => {
  const r = run(['create', '--name', 'term', '--memory', '256']);
  assert.equal(r.status, 0, r.stderr);
});
after(async () => {
  tmux('kill-session', '-t', session);
  run(['rm', '-f', 'term']);
  rmSync(scratch, { recursive: true, force: true });
  await t.cleanup();
});

describe('vmbox shell and exec -it (through tmux)', () => {
  it('is a real terminal: stty sees its size and a resize, Ctrl-C reaches the guest, the exit code comes back', async () => {
    // The CLI's exit code goes to a file: tmux's own record of it is not reliable across versions.
    const exitFile = join(scratch, 'shell-exit');
    const line = `VMBOX_HOME='${t.home}' VMBOX_SOCKET= '${vmbox}' shell term; echo $? > '${exitFile}'; sleep 30`;
    const r = tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', 'sh', '-c', line);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(await waitFor(() => /[#$]\s*$/m.test(screen()), 20_000), screen());
    tmux('send-keys', '-t', session, 'stty size', 'Enter');
    assert.ok(await waitFor(() => screen().includes('30 100')), screen());
    tmux('resize-window', '-t', session, '-x', '120', '-y', '40');
    tmux('send-keys', '-t', session, 'stty size', 'Enter');
    assert.ok(await waitFor(() => screen().includes('40 120')), screen());
    tmux('send-keys', '-t', session, 'sleep 60; echo not-interrupted', 'Enter');
    await new Promise((r) => setTimeout(r, 500));
    tmux('send-keys', '-t', session, 'C-c');
    tmux('send-keys', '-t', session, 'echo after-$((6*7))', 'Enter');
    assert.ok(await waitFor(() => screen().includes('after-42')), screen());
    assert.ok(!/^not-interrupted\s*$/m.test(screen()), 'Ctrl-C ended the sleep in the guest');
    tmux('send-keys', '-t', session, 'exit 5', 'Enter');
    assert.ok(await waitFor(() => existsSync(exitFile) && readFileSync(exitFile, 'utf8').endsWith('\n')), screen());
    assert.equal(readFileSync(exitFile, 'utf8'), '5\n');
    tmux('kill-session', '-t', session);
  });

  it('exec -it runs any program on the terminal', async () => {
    tmux('kill-session', '-t', session);
    const r = tmux(
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '90',
      '-y',
      '20',
      'env',
      `VMBOX_HOME=${t.home}`,
      'VMBOX_SOCKET=',
      vmbox,
      'exec',
      '-it',
      'term',
      '--',
      'sh',
      '-c',
      'tty; stty size; read x; echo got-$x',
    );
    assert.equal(r.status, 0, r.stderr);
    tmux('set-option', '-t', session, 'remain-on-exit', 'on');
    assert.ok(await waitFor(() => /\/dev\/pts\/\d+/.test(screen()) && screen().includes('20 90'), 20_000), screen());
    tmux('send-keys', '-t', session, 'typed', 'Enter');
    assert.ok(await waitFor(() => screen().includes('got-typed')), screen());
    tmux('kill-session', '-t', session);
  });
});

describe('vmbox cp', () => {
  it('copies a directory in and back out, keeping content and modes', () => {
    const src = join(scratch, 'tree');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho ran\n');
    chmodSync(join(src, 'run.sh'), 0o755);
    writeFileSync(join(src, 'sub', 'secret'), 'key');
    chmodSync(join(src, 'sub', 'secret'), 0o600);
    chmodSync(join(src, 'sub'), 0o750);
    writeFileSync(join(src, 'sub', 'data.bin'), Buffer.alloc(3 << 20, 9));
    symlinkSync('run.sh', join(src, 'link'));
    run(['exec', 'term', '--', 'mkdir', '-p', '/work']);

    const up = run(['cp', src, 'term:/work']);
    assert.equal(up.status, 0, up.stderr);
    assert.match(up.stderr, /copied 3 files and 1 symlink/);
    const ls = run([
      'exec',
      'term',
      '--',
      'sh',
      '-c',
      'cd /work/tree && stat -c "%n %a %s" run.sh sub sub/secret sub/data.bin && ./run.sh',
    ]);
    assert.equal(
      ls.stdout,
      `run.sh 755 ${'#!/bin/sh\necho ran\n'.length}\nsub 750 4096\nsub/secret 600 3\nsub/data.bin 644 ${3 << 20}\nran\n`,
    );

    const back = join(scratch, 'back');
    const down = run(['cp', 'term:/work/tree', back]);
    assert.equal(down.status, 0, down.stderr);
    assert.equal(statSync(join(back, 'run.sh')).mode & 0o777, 0o755);
    assert.equal(statSync(join(back, 'sub')).mode & 0o777, 0o750);
    assert.equal(statSync(join(back, 'sub', 'secret')).mode & 0o777, 0o600);
    assert.deepEqual(readFileSync(join(back, 'sub', 'data.bin')), Buffer.alloc(3 << 20, 9));
  });

  it('says what is wrong with a bad path', () => {
    const missing = run(['cp', 'term:/nope', scratch]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^vmbox: stat \/nope: No such file or directory\n$/);
    const both = run(['cp', join(scratch, 'a'), join(scratch, 'b')]);
    assert.match(both.stderr, /give exactly one side as NAME:\/path/);
  });
});
