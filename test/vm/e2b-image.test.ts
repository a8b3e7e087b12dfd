import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sharedSandbox } from './helpers.js';

/** Bash as a login shell, as E2B's SDK runs a command: the checks see what such a command sees. */
const bash = (script: string) => ['bash', '-lc', script];

describe('the built-in e2b-base image', () => {
  // Built from Debian's packages on first use (about half a minute), then from the shared cache.
  const sbx = sharedSandbox({ image: 'e2b-base' });

  it('runs commands as user 1000 in its home by default, as E2B’s base template does', async () => {
    const r = await sbx().run(bash('id -u; id -g; id -un; pwd; echo "$HOME $USER"; stat -c %u:%g /home/user'));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, '1000\n1000\nuser\n/home/user\n/home/user user\n1000:1000\n');
  });

  it('has bash, python3 and git that work', async () => {
    const r = await sbx().run(
      bash(
        [
          'echo "$BASH_VERSION" | cut -d. -f1',
          "python3 -c 'print(6*7)'",
          'd=$(mktemp -d) && cd "$d" && git init -q && echo hi > f && git add f',
          'git -c user.name=t -c user.email=t@example.com commit -qm first && git log --format=%s',
        ].join('\n'),
      ),
    );
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, '5\n42\nfirst\n');
  });

  it('gives user passwordless sudo, without a warning about the hostname', async () => {
    const r = await sbx().run(bash('sudo -n true && sudo -n id -u'));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, '0\n');
    assert.equal(r.stderr, '');
  });

  it('runs as root when asked, which can write under /root', async () => {
    const r = await sbx().run(bash('id -u; echo kept > /root/f && cat /root/f'), { user: 'root' });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, '0\nkept\n');
  });

  it('ships no apt lists or downloaded packages', async () => {
    // As root: apt keeps its partial downloads in directories only root (and _apt) may read.
    const r = await sbx().run(bash('find /var/lib/apt/lists /var/cache/apt -type f ! -name lock'), { user: 'root' });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, '');
  });
});
