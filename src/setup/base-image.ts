import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { paths } from '../paths.js';
import { busyboxCacheDir, ensureBusybox } from './busybox.js';
import { buildOnce, inputsKey } from './cache.js';
import { progress } from './progress.js';
import { runCommand } from './run-command.js';

/** Bump when the layout below changes: it is part of the cache key. */
const LAYOUT_VERSION = '2';
export const BASE_DISK_BYTES = 2 * 1024 ** 3;

export function baseImageDir(): string {
  return join(paths.images(), 'builtin', `base-${inputsKey([{ text: LAYOUT_VERSION }, { text: busyboxCacheDir() }])}`);
}

const files: Record<string, string> = {
  'etc/passwd':
    'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  'etc/group': 'root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n',
  'etc/hostname': 'vmbox\n',
  'etc/hosts': '127.0.0.1 localhost\n',
  'etc/os-release': 'NAME="vmbox base"\nID=vmbox\nPRETTY_NAME="vmbox base (busybox)"\n',
  'etc/profile': 'export PS1="\\u@\\h:\\w\\$ "\n',
};

/**
 * The built-in `base` image: busybox (built from Debian's source, see
 * busybox/build.sh) and its applets, three users, on a sparse
 * raw ext4 disk made with `mkfs.ext4 -d` (no loop mount, no root-only tools).
 */
export async function ensureBaseImage(): Promise<string> {
  const dir = baseImageDir();
  const disk = join(dir, 'rootfs.ext4');
  if (existsSync(disk)) return disk;
  const busybox = await ensureBusybox();
  progress('building the built-in base image');
  mkdirSync(paths.images(), { recursive: true });
  await buildOnce(dir, 'rootfs.ext4', async (tmp) => {
    const root = join(tmp, 'root');
    for (const d of [
      'bin',
      'sbin',
      'usr/bin',
      'usr/sbin',
      'etc',
      'root',
      'home/user',
      'tmp',
      'proc',
      'sys',
      'dev',
      'run',
      'var/tmp',
      'work',
    ])
      mkdirSync(join(root, d), { recursive: true });
    copyFileSync(busybox, join(root, 'bin/busybox'));
    chmodSync(join(root, 'bin/busybox'), 0o755);
    const applets = execFileSync(busybox, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const a of applets) {
      if (a === 'bin/busybox' || existsSync(join(root, a))) continue;
      mkdirSync(join(root, a, '..'), { recursive: true });
      symlinkSync('/bin/busybox', join(root, a));
    }
    for (const [name, text] of Object.entries(files)) writeFileSync(join(root, name), text);
    chmodSync(join(root, 'tmp'), 0o1777);
    chmodSync(join(root, 'var/tmp'), 0o1777);
    chmodSync(join(root, 'root'), 0o700);
    execFileSync('chown', ['1000:1000', join(root, 'home/user')]);
    const out = join(tmp, 'rootfs.ext4');
    writeFileSync(out, '');
    await runCommand('truncate', ['-s', String(BASE_DISK_BYTES), out]);
    // Inode tables and journal initialised now, so no ext4lazyinit thread competes
    // with the guest's first commands for the one emulated CPU.
    await runCommand('mkfs.ext4', ['-q', '-F', '-L', 'vmbox-root', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', root, out]);
    await runCommand('rm', ['-rf', root]);
  });
  return disk;
}
