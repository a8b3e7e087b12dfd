import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { vmboxHome } from '../../paths.js';

/**
 * A jailed QEMU's cgroups: which controllers this host lets vmbox use (v1, or
 * v2 where its group can hand them down), one group per VM under a folder per
 * home, its limits, and the groups of VMs gone with no server to see it.
 */
export type ControllerName = 'memory' | 'pids' | 'cpu';
const CONTROLLERS: ControllerName[] = ['memory', 'pids', 'cpu'];

export interface CgroupHost {
  on: boolean;
  detail: string;
  /** vmbox's folder in each controller's hierarchy. */
  dirs: Partial<Record<ControllerName, string>>;
  version?: 1 | 2;
}

export interface CgroupLimits {
  memoryBytes: number;
  pidsMax: number;
  /** vCPUs: the CPU weight is in proportion. */
  cpuWeight: number;
}

let host: CgroupHost | undefined;

/** What this host's cgroups allow, found once. */
export function cgroupHost(): CgroupHost {
  host ??= detect();
  return host;
}

/** cgroup v1 controllers (one hierarchy each) or v2's unified tree, under this process's own group. */
function detect(): CgroupHost {
  let own: string[];
  try {
    own = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
  } catch {
    return { on: false, detail: 'no /proc/self/cgroup: the rlimits alone cap QEMU', dirs: {} };
  }
  const dirs: Partial<Record<ControllerName, string>> = {};
  const missing: string[] = [];
  for (const name of CONTROLLERS) {
    const line = own.find((l) => l.split(':')[1]?.split(',').includes(name));
    const mount = `/sys/fs/cgroup/${name}`;
    const dir = line && join(mount, line.split(':').slice(2).join(':'), 'vmbox');
    if (dir && existsSync(join(mount, 'cgroup.procs')) && canMake(dir)) dirs[name] = dir;
    else missing.push(name);
  }
  if (missing.length === 0) return { on: true, detail: `cgroup v1: ${CONTROLLERS.join(', ')}`, dirs, version: 1 };
  const unified = own.find((l) => l.startsWith('0::'));
  if (unified && existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const base = join('/sys/fs/cgroup', unified.slice(3));
    const available = readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').trim().split(/\s+/);
    const dir = join(base, 'vmbox');
    try {
      if (!CONTROLLERS.every((c) => available.includes(c)))
        throw new Error(`the unified tree has ${available.join(' ') || 'no controllers'}`);
      mkdirSync(dir, { recursive: true });
      // v2 hands controllers down only through groups without processes of their own: vmbox's group qualifies only at the root.
      writeFileSync(join(base, 'cgroup.subtree_control'), CONTROLLERS.map((c) => `+${c}`).join(' '));
      writeFileSync(join(dir, 'cgroup.subtree_control'), CONTROLLERS.map((c) => `+${c}`).join(' '));
      return { on: true, detail: `cgroup v2: ${CONTROLLERS.join(', ')}`, dirs: { memory: dir, pids: dir, cpu: dir }, version: 2 };
    } catch (err) {
      return {
        on: false,
        detail: `cgroup v1 lacks ${missing.join(', ')} and v2 cannot be used (${(err as Error).message}): QEMU's rlimits still hold`,
        dirs: {},
      };
    }
  }
  return { on: false, detail: `no cgroup controller for ${missing.join(', ')}: QEMU's rlimits still hold`, dirs: {} };
}

function canMake(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    return true;
  } catch {
    return false;
  }
}

/** VMs of this process whose groups exist or are being made: a sweep leaves them be. */
const grouped = new Set<string>();

/** vmbox's folder in one controller, for this home: a sweep never touches another home's VMs. */
function homeGroup(controller: ControllerName): string | undefined {
  const parent = cgroupHost().dirs[controller];
  return parent && join(parent, createHash('sha256').update(vmboxHome()).digest('hex').slice(0, 12));
}

/** The VM's group in each controller, its limits written; returns the files its pid is written to (`joinCgroups`). */
export function makeCgroups(vmId: string, limits: CgroupLimits): string[] {
  const { version } = cgroupHost();
  sweepCgroups();
  grouped.add(vmId);
  const procs = new Set<string>();
  for (const name of CONTROLLERS) {
    const parent = homeGroup(name);
    if (!parent) continue;
    const dir = join(parent, `vm-${vmId}`);
    mkdirSync(dir, { recursive: true });
    const set = (file: string, value: string | number) => writeFileSync(join(dir, file), String(value));
    if (name === 'memory') set(version === 2 ? 'memory.max' : 'memory.limit_in_bytes', limits.memoryBytes);
    if (name === 'pids') set('pids.max', limits.pidsMax);
    // A weight, not a quota: vCPUs share the host's CPUs in proportion, and an idle host lends them all.
    if (name === 'cpu')
      set(version === 2 ? 'cpu.weight' : 'cpu.shares', version === 2 ? Math.min(10_000, 100 * limits.cpuWeight) : 1024 * limits.cpuWeight);
    procs.add(join(dir, 'cgroup.procs'));
  }
  return [...procs];
}

/** Removes a VM's groups once its QEMU has exited. */
export function releaseCgroups(vmId: string): void {
  grouped.delete(vmId);
  for (const name of CONTROLLERS) {
    const dir = cgroupOf(vmId, name);
    try {
      if (dir) rmdirSync(dir);
    } catch {}
  }
}

/**
 * Removes the groups this home's VMs left when they ended with no server to see it
 * (an empty group goes; one with a live QEMU refuses), but those of this process's VMs.
 */
function sweepCgroups(): void {
  for (const name of CONTROLLERS) {
    const parent = homeGroup(name);
    let entries: string[];
    try {
      entries = parent ? readdirSync(parent).filter((e) => e.startsWith('vm-') && !grouped.has(e.slice(3))) : [];
    } catch {
      continue;
    }
    for (const e of entries) {
      try {
        rmdirSync(join(parent as string, e));
      } catch {}
    }
  }
}

/** The cgroup folder of a VM for one controller (tests look inside), if cgroups are on. */
export function cgroupOf(vmId: string, controller: ControllerName): string | undefined {
  const parent = homeGroup(controller);
  return parent && join(parent, `vm-${vmId}`);
}

/**
 * Moves a started QEMU into its groups. After the start, not before it: each
 * move into a v1 hierarchy waits out an RCU grace period (about 10 ms here, the
 * three together on a warm start's critical path), while QEMU's first megabytes,
 * charged to the group it leaves, are all it does meanwhile. The moves run in
 * parallel; one that fails says so in QEMU's log.
 */
export function joinCgroups(pid: number, procs: string[], log: string): void {
  for (const file of procs) {
    writeFile(file, String(pid)).catch((err: Error) =>
      appendFile(log, `vmbox: QEMU was not moved into ${file}: ${err.message}\n`).catch(() => {}),
    );
  }
}
