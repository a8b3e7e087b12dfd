import { execFileSync } from 'node:child_process';
import { chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, type WriteStream, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { VmboxError } from '../errors.js';
import { paths } from '../paths.js';
import { buildOnce, inputsKey } from './cache.js';
import { progress } from './progress.js';
import { runCommand } from './run-command.js';

/** Bump when the steps below change; the suite, sources and packages are part of the key by themselves. */
const LAYOUT_VERSION = '2';
const SUITE = 'bookworm';
/** Debian's archive, updates and security fixes: the image has the fixes of the day it was built. */
const SOURCES = [
  `deb http://deb.debian.org/debian ${SUITE} main`,
  `deb http://deb.debian.org/debian ${SUITE}-updates main`,
  `deb http://deb.debian.org/debian-security ${SUITE}-security main`,
];
/**
 * What E2B's `base` template gives a command: bash and the usual tools,
 * Python, git, sudo, curl. Nothing more: every MiB is in the shared cache and
 * read by every sandbox of the image.
 */
export const E2B_BASE_PACKAGES = [
  'bash',
  'coreutils',
  'findutils',
  'grep',
  'sed',
  'less',
  'procps',
  'iproute2',
  'ca-certificates',
  'curl',
  'git',
  'python3',
  // `python` and `pip`, as E2B's base template has them (its own examples run `python -m …`).
  'python-is-python3',
  'python3-pip',
  'sudo',
  // Resolves the sandbox's own hostname (set at boot, so in no /etc/hosts):
  // without it every sudo warns "unable to resolve host".
  'libnss-myhostname',
];
/**
 * Manuals, documentation (but its copyright files) and translations are not
 * unpacked: 73 MiB of 296. The rule stays in the image's dpkg configuration,
 * so packages installed later in a sandbox leave them out too, as in Debian's
 * slim container images.
 */
const DPKG_EXCLUDES = [
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/locale/*',
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
];
/** Room for what a sandbox writes, beyond the image's own files. */
const FREE_BYTES = 1.5 * 1024 ** 3;
const MIN_DISK_BYTES = 2 * 1024 ** 3;
const MIB = 1024 ** 2;

/**
 * Where the image for the current inputs lives, whether or not it is built yet.
 * In the cache, not the image store: it takes half a minute to build, and homes that
 * share the cache (a test's, a second checkout's) share it too. Sandboxes only
 * read it (their writes go to a qcow2 overlay), and `vmbox image prune` sweeps
 * the store alone.
 */
export function e2bBaseImageDir(): string {
  const key = inputsKey([{ text: LAYOUT_VERSION }, { text: SOURCES.join('\n') }, { text: E2B_BASE_PACKAGES.join(',') }]);
  return join(paths.cache(), 'e2b-base', key);
}

export const e2bBaseDisk = (): string => join(e2bBaseImageDir(), 'rootfs.ext4');

/**
 * The built-in `e2b-base` image: Debian with the packages above, E2B's user
 * `user` (uid 1000, passwordless sudo), on a sparse raw ext4 disk made with
 * `mkfs.ext4 -d` like `base`'s. Built once per inputs, across processes.
 */
export async function ensureE2bBaseImage(): Promise<string> {
  const disk = e2bBaseDisk();
  if (existsSync(disk)) return disk;
  checkHost();
  const dir = e2bBaseImageDir();
  mkdirSync(join(dir, '..'), { recursive: true });
  const logPath = `${dir}.log`;
  progress(
    `building the built-in e2b-base image from Debian ${SUITE} packages (once: 75 MB of packages, then about 30 s); log: ${logPath}`,
  );
  const started = Date.now();
  let firstError = '';
  try {
    await buildOnce(dir, 'rootfs.ext4', async (tmp) => {
      const log = createWriteStream(logPath);
      try {
        await build(tmp, log, (line) => {
          // The first error is the cause; mmdebstrap's last one only says that it failed.
          if (line.startsWith('E: ') && !firstError) firstError = line.slice(3);
        });
      } finally {
        log.end();
      }
    });
  } catch (err) {
    const why = firstError || (err as Error).message.split('\n')[0];
    throw new VmboxError(
      'hostSetup',
      `building the e2b-base image failed (${why}): see ${logPath}; it needs Debian's archive at deb.debian.org reachable from this host`,
      { cause: err },
    );
  }
  progress(`e2b-base image ready in ${Math.round((Date.now() - started) / 1000)} s`);
  return disk;
}

/** What the build needs of the host, said before the build rather than after it. */
function checkHost(): void {
  const onPath = (cmd: string) => (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
  if (!onPath('mmdebstrap'))
    throw new VmboxError(
      'hostSetup',
      'building the e2b-base image needs mmdebstrap: run ./vmbox once as root (it installs it), or apt-get install mmdebstrap',
    );
  // Its files belong to root and to user 1000, and mmdebstrap installs them with chroot.
  if (process.getuid?.() !== 0) throw new VmboxError('hostSetup', 'building the e2b-base image needs root: run it once as root');
}

async function build(tmp: string, log: WriteStream, onLine: (line: string) => void): Promise<void> {
  const root = join(tmp, 'root');
  mkdirSync(tmp, { recursive: true });
  const logged = (line: string) => {
    log.write(`${line}\n`);
    onLine(line);
  };
  await runCommand(
    'mmdebstrap',
    [
      '--verbose',
      '--mode=root',
      '--variant=minbase',
      `--include=${E2B_BASE_PACKAGES.join(',')}`,
      ...DPKG_EXCLUDES.map((o) => `--dpkgopt=${o}`),
      SUITE,
      root,
      ...SOURCES,
    ],
    {
      onLine: (line) => {
        logged(line);
        // Its step lines ("I: downloading packages with apt...") are the progress;
        // not its notes on signals and the like, which have other characters.
        if (/^I: [a-z][a-z -]*\.\.\.$/.test(line)) progress(`e2b-base: ${line.slice(3)}`);
      },
    },
  );
  progress('e2b-base: adding user, sudo rule and host files');
  await customize(root, logged);
  progress('e2b-base: writing the ext4 disk');
  await writeDisk(root, join(tmp, 'rootfs.ext4'));
  rmSync(root, { recursive: true, force: true });
}

/**
 * E2B's user and the files a VM reads; what mmdebstrap copied from the host
 * goes. Apt's lists and downloaded packages are gone already: mmdebstrap's last
 * step empties /var/lib/apt/lists and /var/cache/apt.
 */
async function customize(root: string, onLine: (line: string) => void): Promise<void> {
  const inRoot = (args: string[]) => runCommand('chroot', [root, ...args], { onLine });
  await inRoot(['groupadd', '--gid', '1000', 'user']);
  await inRoot(['useradd', '--uid', '1000', '--gid', '1000', '--create-home', '--shell', '/bin/bash', 'user']);
  const sudoers = join(root, 'etc/sudoers.d/user');
  writeFileSync(sudoers, 'user ALL=(ALL:ALL) NOPASSWD: ALL\n');
  chmodSync(sudoers, 0o440); // the mode visudo checks for, as Debian's own rule files have
  await inRoot(['visudo', '--check', '--quiet', '--file', '/etc/sudoers.d/user']);
  writeFileSync(join(root, 'etc/hostname'), 'vmbox\n');
  writeFileSync(join(root, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n');
  // The host's resolver: the agent writes the sandbox's own when its network comes up.
  rmSync(join(root, 'etc/resolv.conf'), { force: true });
  // Every E2B command runs in a login shell, which reads /etc/profile, whose
  // `$(id -u)` forks and execs a program: 45 of a login's 110 ms under software
  // emulation. Bash knows its uid already; sh still asks id.
  const profile = join(root, 'etc/profile');
  const bashUid = ['"$', '{EUID:-$(id -u)}"'].join(''); // shell text, not a template
  writeFileSync(profile, readFileSync(profile, 'utf8').replaceAll('"$(id -u)"', bashUid));
}

/** A sparse ext4 of the tree with FREE_BYTES to spare; `mkfs.ext4 -d` keeps owners, modes and sudo's setuid bit. */
async function writeDisk(root: string, out: string): Promise<void> {
  const used = Number(execFileSync('du', ['-sk', root], { encoding: 'utf8' }).split('\t')[0]) * 1024;
  const size = Math.max(MIN_DISK_BYTES, Math.ceil((used + FREE_BYTES) / (256 * MIB)) * 256 * MIB);
  writeFileSync(out, '');
  await runCommand('truncate', ['-s', String(size), out]);
  // Inode tables and journal initialised now, as for `base`: no ext4lazyinit in the guest.
  await runCommand('mkfs.ext4', ['-q', '-F', '-L', 'vmbox-root', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', root, out]);
}
