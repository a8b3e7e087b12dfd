import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { VmboxError } from '../errors.js';
import type { Mount, Rlimits } from '../spec/mounts.js';
import type { SandboxSpec } from '../spec/sandbox.js';
import { parseSizeMib } from './format.js';

export interface MountFlags {
  /** `--disk`: a root disk size, or host disk images to mount. */
  disk?: string[];
  volume?: string[];
  tmpfs?: string[];
  hostname?: string;
  ulimit?: string[];
  diskBps?: string;
  diskIops?: string;
  security?: 'default' | 'restricted' | 'privileged';
  capAdd?: string[];
  capDrop?: string[];
  script?: string[];
  shell?: string;
  rootfs?: string;
  upperSize?: string;
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  init?: string;
}

export const collectFlag = (v: string, acc: string[]) => [...acc, v];
const collect = collectFlag;
/** Capability names as Docker takes them: any case, with or without CAP_; repeatable. */
const upperAll = (value: string, prev: string[] = []) => [...prev, value.toUpperCase().replace(/^CAP_/, '')];

/** `-v`, `--tmpfs`, `--hostname`, `--ulimit`, as docker spells them. */
export function addMountFlags(cmd: Command): Command {
  return cmd
    .option(
      '-v, --volume <SRC:DST[:OPTS]>',
      'mount a host directory (SRC a path: ./src, /data) or a named volume (SRC a name) at DST; OPTS: ro, noexec, nosuid, nodev (repeatable)',
      collect,
      [],
    )
    .option('--tmpfs <DST[:OPTS]>', 'a tmpfs at DST; OPTS: size=256m, ro, noexec, nosuid, nodev (repeatable)', collect, [])
    .option('--hostname <name>', "the guest's hostname")
    .option('--ulimit <NAME=SOFT[:HARD]>', 'a resource limit of every process, e.g. nofile=4096:8192 (repeatable)', collect, [])
    .option('--disk-bps <rate>', 'I/O bytes per second of each disk, reads and writes together, e.g. 20m')
    .option('--disk-iops <n>', 'I/O operations per second of each disk')
    .option('--script <NAME=BODY>', 'a named shell script, run by vmbox exec SANDBOX --script NAME (repeatable)', collect, [])
    .option('--shell <path>', 'the shell scripts run with (default /bin/sh)')
    .option(
      '--rootfs <path>',
      'the root instead of the image: a host directory (the guest writes into it) or a disk image (qcow2, raw, vmdk; ext4 inside; the file is not changed)',
    )
    .option('--upper-size <size>', "room to write beyond the image's own disk, e.g. 4g (the root grows to it)")
    .option(
      '--init <path>',
      "hand PID 1 to the image's own init (a path, or auto: /sbin/init, systemd or tini) once the system is prepared",
    )
    .addOption(
      new Option('--log-level <level>', "what the guest agent writes to the VM's console log").choices(['error', 'warn', 'info', 'debug']),
    )
    .addOption(
      new Option(
        '--security <profile>',
        "default: Docker's default capabilities; restricted: also no_new_privs (sudo fails), nosuid mounts; privileged: every capability",
      ).choices(['default', 'restricted', 'privileged']),
    )
    .option('--cap-add <cap>', 'a capability commands hold beyond the profile (SYS_PTRACE, NET_ADMIN …, ALL)', upperAll)
    .option('--cap-drop <cap>', 'a capability commands never hold (ALL for every one)', upperAll);
}

/** The spec fields the flags say; host paths are made absolute against this directory. */
export function mountsFromFlags(
  f: MountFlags,
  cwd = process.cwd(),
): Partial<
  Pick<
    SandboxSpec,
    | 'mounts'
    | 'hostname'
    | 'rlimits'
    | 'diskIo'
    | 'securityProfile'
    | 'capAdd'
    | 'capDrop'
    | 'shell'
    | 'scripts'
    | 'rootDisk'
    | 'rootDir'
    | 'upperSizeMib'
    | 'logLevel'
    | 'init'
  >
> {
  const mounts: Mount[] = [
    ...(f.disk ?? []).filter((d) => d.includes(':')).map((d) => diskMountFlag(d, cwd)),
    ...(f.volume ?? []).map((v) => volumeFlag(v, cwd)),
    ...(f.tmpfs ?? []).map((t) => tmpfsFlag(t)),
  ];
  const rlimits = Object.fromEntries((f.ulimit ?? []).map(ulimitFlag)) as Rlimits;
  return {
    ...(f.capAdd?.length ? { capAdd: f.capAdd as SandboxSpec['capAdd'] } : {}),
    ...(f.capDrop?.length ? { capDrop: f.capDrop as SandboxSpec['capDrop'] } : {}),
    ...(mounts.length ? { mounts } : {}),
    ...(f.hostname ? { hostname: f.hostname } : {}),
    ...(f.security ? { securityProfile: f.security } : {}),
    ...(f.shell ? { shell: f.shell } : {}),
    ...(f.rootfs ? rootfsFlag(f.rootfs, cwd) : {}),
    ...(f.upperSize ? { upperSizeMib: parseSizeMib(f.upperSize) } : {}),
    ...(f.logLevel ? { logLevel: f.logLevel } : {}),
    ...(f.init ? { init: { path: f.init } } : {}),
    ...(f.script?.length ? { scripts: scriptsFlag(f.script) } : {}),
    ...(Object.keys(rlimits).length ? { rlimits } : {}),
    ...(f.diskBps || f.diskIops
      ? {
          diskIo: {
            ...(f.diskBps ? { bytesPerSec: parseSizeMib(f.diskBps) * 1024 * 1024 } : {}),
            ...(f.diskIops ? { opsPerSec: Number(f.diskIops) } : {}),
          },
        }
      : {}),
  };
}

function volumeFlag(text: string, cwd: string): Mount {
  const [source, target, opts = '', ...rest] = text.split(':');
  if (!source || !target || rest.length)
    throw new VmboxError('invalidArgument', `-v ${text}: expected SRC:DST[:OPTS], e.g. ./src:/work:ro or cache:/root/.cache`);
  const flags = options('-v', text, opts, ['ro', 'rw', 'noexec', 'nosuid', 'nodev']);
  const common = { target, ...flags };
  // A path (it has a slash or starts with a dot) is a host directory; anything else names a volume.
  if (source.includes('/') || source.startsWith('.')) return { type: 'bind', source: resolve(cwd, source), ...common };
  return { type: 'volume', source, ...common };
}

/** `--disk 10G` sizes the root disk (the last one given); `--disk FILE:DST[:OPTS]` mounts are in mountsFromFlags. */
export function diskFromFlags(values: string[]): { diskMib?: number } {
  const sizes = values.filter((d) => !d.includes(':'));
  return sizes.length ? { diskMib: parseSizeMib(sizes[sizes.length - 1] as string) } : {};
}

function diskMountFlag(text: string, cwd: string): Mount {
  const [source, target, opts = '', ...rest] = text.split(':');
  if (!source || !target || rest.length)
    throw new VmboxError('invalidArgument', `--disk ${text}: expected FILE:DST[:OPTS], e.g. ./data.qcow2:/data`);
  return {
    type: 'disk',
    source: resolve(cwd, source),
    target,
    ...options('--disk', text, opts, ['ro', 'rw', 'noexec', 'nosuid', 'nodev']),
  };
}

function tmpfsFlag(text: string): Mount {
  const [target = '', opts = ''] = text.split(/:(.*)/s);
  let sizeMib: number | undefined;
  const rest = opts
    .split(',')
    .filter(Boolean)
    .filter((o) => {
      if (!o.startsWith('size=')) return true;
      sizeMib = parseSizeMib(o.slice(5));
      return false;
    });
  const flags = options('--tmpfs', text, rest.join(','), ['ro', 'noexec', 'nosuid', 'nodev']);
  // Docker's default: half the memory; here a fixed default the spec check holds against the memory.
  return { type: 'tmpfs', target, sizeMib: sizeMib ?? 64, ...flags };
}

function options(flag: string, text: string, opts: string, known: string[]) {
  const out: { readOnly?: boolean; noexec?: boolean; nosuid?: boolean; nodev?: boolean } = {};
  for (const o of opts.split(',').filter(Boolean)) {
    if (!known.includes(o)) throw new VmboxError('invalidArgument', `${flag} ${text}: unknown option ${o} (known: ${known.join(', ')})`);
    if (o === 'ro') out.readOnly = true;
    else if (o === 'noexec' || o === 'nosuid' || o === 'nodev') out[o] = true;
  }
  return out;
}

/** `--rootfs`: a host directory (9p) or a disk image file as the root. */
function rootfsFlag(path: string, cwd: string): { rootDir: string } | { rootDisk: string } {
  const abs = resolve(cwd, path);
  return existsSync(abs) && statSync(abs).isDirectory() ? { rootDir: abs } : { rootDisk: abs };
}

function scriptsFlag(values: string[]): Record<string, string> {
  return Object.fromEntries(
    values.map((v) => {
      const i = v.indexOf('=');
      if (i <= 0) throw new VmboxError('invalidArgument', `--script ${v}: expected NAME=BODY, e.g. test='npm test'`);
      return [v.slice(0, i), v.slice(i + 1)];
    }),
  );
}

function ulimitFlag(text: string): [string, { soft: number; hard: number }] {
  const m = /^([a-z]+)=(-?\w+)(?::(-?\w+))?$/.exec(text);
  const num = (v: string) => (v === 'unlimited' ? -1 : Number(v));
  const soft = m?.[2] === undefined ? Number.NaN : num(m[2]);
  const hard = m?.[3] === undefined ? soft : num(m[3]);
  if (!m || !Number.isInteger(soft) || !Number.isInteger(hard))
    throw new VmboxError('invalidArgument', `--ulimit ${text}: expected NAME=SOFT[:HARD], e.g. nofile=4096:8192 (unlimited is -1)`);
  return [m[1] as string, { soft, hard }];
}
