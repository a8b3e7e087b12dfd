import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sharedRuntime, withSandbox } from './helpers.js';

describe('patches applied to a sandbox’s root filesystem', () => {
  const host = mkdtempSync(join(tmpdir(), 'vmbox-patch-'));
  after(() => rmSync(host, { recursive: true, force: true }));
  const rt = sharedRuntime();

  it('writes, appends, copies, links, makes and removes before anything runs', async () => {
    mkdirSync(join(host, 'tree/sub'), { recursive: true });
    writeFileSync(join(host, 'tree/run.sh'), '#!/bin/sh\necho ran\n');
    chmodSync(join(host, 'tree/run.sh'), 0o750);
    writeFileSync(join(host, 'tree/sub/data'), 'd\n');
    symlinkSync('run.sh', join(host, 'tree/link'));
    await withSandbox(
      rt(),
      {
        patches: [
          { op: 'write', path: '/etc/app.conf', text: 'a=1\n', mode: 0o600 },
          { op: 'append', path: '/etc/app.conf', text: 'b=2\n' },
          { op: 'write', path: '/opt/bin.dat', base64: Buffer.from([0, 1, 255]).toString('base64') },
          { op: 'copy', from: join(host, 'tree'), path: '/opt/tree' },
          { op: 'symlink', target: '/opt/tree/run.sh', path: '/usr/local/bin/run' },
          { op: 'mkdir', path: '/srv/data', mode: 0o700 },
          { op: 'remove', path: '/etc/hostname' },
          { op: 'write', path: '/etc/os-release', text: 'replaced\n', replace: true },
        ],
      },
      async (s) => {
        const r = await s.run([
          'sh',
          '-c',
          'cat /etc/app.conf; stat -c %a /etc/app.conf; od -An -tu1 /opt/bin.dat; run; stat -c %a /opt/tree/run.sh; cat /opt/tree/sub/data; readlink /opt/tree/link; stat -c %a /srv/data; ls /etc/hostname 2>&1; cat /etc/os-release',
        ]);
        assert.equal(
          r.stdout,
          'a=1\nb=2\n600\n   0   1 255\nran\n750\nd\nrun.sh\n700\nls: /etc/hostname: No such file or directory\nreplaced\n',
          r.stderr,
        );
      },
    );
  });

  it('applies patches once: a restarted sandbox keeps them and boots', async () => {
    await withSandbox(rt(), { patches: [{ op: 'write', path: '/etc/once', text: 'once\n' }] }, async (s) => {
      await s.run(['sh', '-c', 'echo changed > /etc/once; sync']);
      await rt().manager.restart(s.id);
      assert.equal((await s.run(['cat', '/etc/once'])).stdout, 'changed\n');
    });
  });

  it('refuses to replace an existing path unless told to, and leaves nothing behind', async () => {
    await assert.rejects(rt().create({ patches: [{ op: 'write', path: '/etc/passwd', text: 'x' }] }), {
      code: 'invalidSpec',
      message: /patches\.0: write \/etc\/passwd failed: .*already exists.*replace: true/,
    });
    await assert.rejects(rt().create({ patches: [{ op: 'write', path: 'relative', text: 'x' } as never] }), {
      code: 'invalidSpec',
    });
  });
});
