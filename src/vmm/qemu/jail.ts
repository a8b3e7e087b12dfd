import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { vmboxHome } from '../../paths.js';
import type { VmSpec } from '../provider.js';
import { type CgroupHost, type CgroupLimits, cgroupHost, makeCgroups } from './cgroups.js';
import { backingChain } from './qcow2.js';

/**
 * QEMU in a jail, as Firecracker's jailer keeps Firecracker (DESIGN.md "Jail").
 * Each QEMU gets a uid of its own — a fresh one per VM, not one shared system
 * user, so one escaped QEMU cannot signal, trace or read the memory of another
 * sandbox's — a mount namespace holding only the files its command line names,
 * an empty network namespace (it talks to the host over unix sockets only),
 * cgroup limits, rlimits and QEMU's own seccomp filter. The launcher
 * (jail/vmbox-jail.c) does the namespace work; this module decides what goes in.
 */

/** Jailed QEMUs run as JAIL_ID_BASE + a slot: above the ranges systemd and /etc/subuid hand out. */
export const JAIL_ID_BASE = 2_000_000_000;
const SLOTS = 1 << 24;
/**
 * The group of the files vmbox shows to more than one jailed QEMU: template and
 * snapshot disk layers (read-only) and warm clones' memory files. QEMU 7.2 opens
 * a memory file it maps privately (copy-on-write) read-write all the same, so a
 * clone's QEMU is given its template's file writable (0660). Each QEMU's mount
 * namespace shows it only its own template's files.
 */
export const SHARED_GID = JAIL_ID_BASE - 1;
/**
 * What a QEMU takes beyond its guest's RAM: TCG's translation cache (TCG_CACHE_MIB,
 * 128), QEMU's own code and heap, device state and 9p buffers (a 256 MiB guest that
 * filled its memory peaked its QEMU at 310 MiB here). Its memory cap is the guest's RAM plus this.
 */
export const MEMORY_OVERHEAD_MIB = 256;
/** Threads: a QEMU has 7–9 at rest, plus its I/O pool's (up to 64) under load. */
export const QEMU_PIDS_MAX = 256;
/** Descriptors: 9p holds one per guest file it has open. */
export const QEMU_NOFILE = 65_536;
/** QEMU's own filter: no obsolete calls, no set*id, no fork or exec, no scheduler or priority changes. */
export const SECCOMP_ARGS = ['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'];

export interface LayerState {
  on: boolean;
  detail: string;
}

export interface JailHost {
  /** Whether QEMU is jailed at all; `detail` says why not. */
  enabled: LayerState;
  /** The folder of each cgroup controller vmbox makes its groups in (cgroup v1 or v2). */
  cgroups: CgroupHost;
}

let host: JailHost | undefined;

/** What this host lets vmbox do, found once. */
export function jailHost(): JailHost {
  host ??= detect();
  return host;
}

function detect(): JailHost {
  const off = (detail: string): JailHost => ({ enabled: { on: false, detail }, cgroups: { on: false, detail, dirs: {} } });
  if (process.platform !== 'linux') return off('not a Linux host: QEMU runs as the user who started vmbox');
  if (process.env.VMBOX_JAIL === 'off') return off('turned off by VMBOX_JAIL=off');
  if (process.getuid?.() !== 0) return off('vmbox does not run as root, so QEMU runs as its user: it cannot change uid or make namespaces');
  return { enabled: { on: true, detail: 'each QEMU as its own uid, in its own mount and network namespaces' }, cgroups: cgroupHost() };
}

const seccompByBinary = new Map<string, boolean>();

/** Whether this QEMU was built with its seccomp filter (`-sandbox` in its help); asked once per binary. */
export function seccompSupported(qemu: string): boolean {
  if (process.platform !== 'linux') return false;
  let known = seccompByBinary.get(qemu);
  if (known === undefined) {
    const help = spawnSync(qemu, ['-help'], { encoding: 'utf8', timeout: 10_000 });
    known = /^-sandbox on/m.test(help.stdout ?? '');
    seccompByBinary.set(qemu, known);
  }
  return known;
}

/** What one QEMU's jail holds. */
export interface JailPlan {
  uid: number;
  groups: number[];
  /** Capabilities QEMU keeps (ambient): dac_override only when it must reach files vmbox cannot hand it. */
  caps: string[];
  readOnly: string[];
  writable: string[];
  /** Regular files given to the QEMU's uid (its disk layer, a memory file it writes). */
  owned: string[];
  /** vmbox's files it shares with other QEMUs: group SHARED_GID, readable by the group (memory files writable too). */
  shared: Array<{ path: string; mode: number }>;
  devices: string[];
  cgroup?: CgroupLimits;
}

/** Uids handed out by this process whose QEMU has not exited yet. */
const taken = new Set<number>();

/** A uid for the VM `id`, free on this host: derived from the id, the next one up if a process holds it. */
export function allocateUid(id: string): number {
  const busy = uidsInUse();
  let h = 0x811c9dc5;
  for (const c of Buffer.from(id)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  for (let k = 0; k < 4096; k++) {
    const uid = JAIL_ID_BASE + ((h + k) % SLOTS);
    if (!busy.has(uid) && !taken.has(uid)) {
      taken.add(uid);
      return uid;
    }
  }
  throw new Error('no free sandbox uid');
}

export function releaseUid(uid: number): void {
  taken.delete(uid);
}

/** Uids of the jail's range that some process runs as (a QEMU of another server or home). */
function uidsInUse(): Set<number> {
  const out = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const { uid } = statSync(`/proc/${entry}`);
      if (uid >= JAIL_ID_BASE) out.add(uid);
    } catch {}
  }
  return out;
}

/** Everything QEMU's command line for `spec` opens, and how. */
export function planJail(spec: VmSpec, uid: number, qemu: string): JailPlan {
  const readOnly = [spec.kernelPath, spec.initrdPath];
  const writable = [spec.runDir];
  const owned: string[] = [];
  const shared: JailPlan['shared'] = [];
  const home = vmboxHome() + sep;
  if (!qemu.startsWith('/usr/')) readOnly.push(qemu);
  const disk = (path: string, ro: boolean | undefined) => {
    const [top, ...below] = backingChain(path);
    (ro ? readOnly : writable).push(top as string);
    if (!ro) owned.push(top as string);
    readOnly.push(...below);
  };
  // A VM that only loads a state never opens its disk (args.ts puts a null one in its place).
  if (spec.rootDisk && !spec.loadOnly) disk(spec.rootDisk.path, spec.rootDisk.readOnly);
  for (const d of spec.extraDisks ?? []) disk(d.path, d.readOnly);
  for (const s of spec.shares ?? []) (s.readOnly ? readOnly : writable).push(s.hostPath);
  if (spec.memoryFile) {
    writable.push(spec.memoryFile.path);
    if (spec.memoryFile.shared) owned.push(spec.memoryFile.path);
    else shared.push({ path: spec.memoryFile.path, mode: 0o660 });
  }
  const mine = owned.filter((p) => p.startsWith(home));
  // vmbox's own layers others read too (a template's disk): read by the group, whoever made them.
  for (const p of readOnly) if (p.startsWith(home) && !worldReadable(p)) shared.push({ path: p, mode: 0o440 });
  const sharedPaths = shared.map((f) => f.path);
  // What vmbox keeps is handed to the uid. A share, or a user's own disk image, stays as it is: reaching it takes DAC_OVERRIDE.
  const handed = new Set([spec.runDir, ...mine, ...sharedPaths]);
  const shares = new Set((spec.shares ?? []).map((s) => s.hostPath));
  const needsOverride =
    shares.size > 0 ||
    writable.some((p) => !handed.has(p) && !isOwnedBy(p, uid)) ||
    readOnly.some((p) => !handed.has(p) && !worldReadable(p));
  const h = jailHost();
  return {
    uid,
    groups: shared.length ? [SHARED_GID] : [],
    // A root directory (`passthrough`) must own and mode files as the guest says: the whole guest system lives there.
    caps: (spec.shares ?? []).some((s) => s.security === 'passthrough')
      ? ['chown', 'dac_override', 'fowner', 'fsetid']
      : needsOverride
        ? ['dac_override']
        : [],
    readOnly: dedupe(readOnly, writable),
    writable: dedupe(writable, []),
    owned: mine,
    shared,
    devices: ['null', 'zero', 'random', 'urandom', ...(spec.accel === 'kvm' ? ['kvm'] : [])],
    ...(h.cgroups.on
      ? { cgroup: { memoryBytes: (spec.memoryMib + MEMORY_OVERHEAD_MIB) * 1024 * 1024, pidsMax: QEMU_PIDS_MAX, cpuWeight: spec.cpus } }
      : {}),
  };
}

function isOwnedBy(path: string, uid: number): boolean {
  try {
    return statSync(path).uid === uid;
  } catch {
    return false;
  }
}

function worldReadable(path: string): boolean {
  try {
    return (statSync(path).mode & 0o004) !== 0;
  } catch {
    return false;
  }
}

/** Paths in order, each once, leaving out those inside a folder already in `within` or before them. */
function dedupe(paths: string[], within: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    const inside = [...within, ...out].some((d) => p === d || p.startsWith(d.endsWith('/') ? d : `${d}/`));
    if (!inside) out.push(p);
  }
  return out;
}

/**
 * Hands the VM's own files to its uid and makes its cgroups; returns the launcher's
 * options and the files QEMU's pid is to be written to (`joinCgroups`, once it runs).
 */
export function prepareJail(plan: JailPlan, vmId: string, runDir: string): { opts: string[]; cgroupProcs: string[] } {
  chownSync(runDir, plan.uid, plan.uid);
  chmodSync(runDir, 0o700);
  for (const f of plan.owned) {
    // A memory file QEMU is to fill is made here: its jail can show it only a file that exists.
    if (!existsSync(f)) writeFileSync(f, '');
    chownSync(f, plan.uid, plan.uid);
  }
  for (const f of plan.shared) {
    chownSync(f.path, 0, SHARED_GID);
    chmodSync(f.path, f.mode);
  }
  const opts = ['--root', jailRoot(), '--uid', String(plan.uid), '--gid', String(plan.uid), '--net'];
  for (const g of plan.groups) opts.push('--group', String(g));
  for (const c of plan.caps) opts.push('--cap', c);
  for (const p of plan.readOnly) opts.push('--ro', p);
  for (const p of plan.writable) opts.push('--rw', p);
  for (const d of plan.devices) opts.push('--dev', d);
  opts.push('--nofile', String(QEMU_NOFILE), '--nproc', String(QEMU_PIDS_MAX));
  return { opts, cgroupProcs: plan.cgroup ? makeCgroups(vmId, plan.cgroup) : [] };
}

/** The empty folder each launcher mounts its root's tmpfs on (privately, in its own namespace). */
function jailRoot(): string {
  const dir = join(vmboxHome(), 'run', 'jail-root');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return dir;
}

/** Each layer of the jail on this host, on or off and why: what `vmbox doctor` shows. */
export function jailLayers(qemu: string | undefined): Array<[string, LayerState]> {
  const h = jailHost();
  const on = h.enabled.on;
  const off = (detail: string): LayerState => ({ on: false, detail });
  const seccomp = qemu && seccompSupported(qemu);
  const nofile = hostHardLimit('Max open files');
  return [
    [
      'uid',
      on
        ? { on, detail: `one per QEMU from ${JAIL_ID_BASE} (never root), no capabilities but DAC_OVERRIDE for a share` }
        : off(h.enabled.detail),
    ],
    [
      'seccomp',
      seccomp
        ? { on: true, detail: SECCOMP_ARGS[1] as string }
        : off(qemu ? 'this QEMU was built without seccomp' : 'QEMU is not installed'),
    ],
    [
      'mounts',
      on ? { on, detail: 'a namespace with /usr, the VM’s own files and 4 devices; /proc shows only QEMU' } : off(h.enabled.detail),
    ],
    ['network', on ? { on, detail: 'an empty namespace: QEMU reaches the host through unix sockets only' } : off(h.enabled.detail)],
    [
      'cgroups',
      h.cgroups.on
        ? {
            on: true,
            detail: `${h.cgroups.detail}: memory = guest + ${MEMORY_OVERHEAD_MIB} MiB, ${QEMU_PIDS_MAX} tasks, CPU weight by vCPUs`,
          }
        : off(h.cgroups.detail),
    ],
    [
      'rlimits',
      on
        ? {
            on,
            detail: `open files ${Math.min(QEMU_NOFILE, nofile)}${nofile < QEMU_NOFILE ? ' (the host’s hard limit)' : ''}, ${QEMU_PIDS_MAX} tasks, no core dumps`,
          }
        : off(h.enabled.detail),
    ],
  ];
}

function hostHardLimit(name: string): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(name));
    const hard = line?.slice(26).trim().split(/\s+/)[1];
    return hard && hard !== 'unlimited' ? Number(hard) : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
