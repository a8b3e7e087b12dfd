import { join } from 'node:path';
import type { Accelerator, DiskThrottle, VmSpec } from '../provider.js';

export const AGENT_PORT_NAME = 'vmbox.agent';

export interface QemuPaths {
  agentSocket: string;
  qmpSocket: string;
  consoleLog: string;
  /** QEMU's own stderr: a file, so QEMU outlives whoever started it. */
  qemuLog: string;
  /** Where a saved or restored state passes between QEMU and the server. */
  migrateSocket: string;
}

export function qemuPaths(runDir: string): QemuPaths {
  return {
    agentSocket: join(runDir, 'agent.sock'),
    qmpSocket: join(runDir, 'qmp.sock'),
    consoleLog: join(runDir, 'console.log'),
    qemuLog: join(runDir, 'qemu.log'),
    migrateSocket: join(runDir, 'migrate.sock'),
  };
}

/**
 * The CPU model under TCG: every feature QEMU can emulate (so x86-64-v2/v3
 * binaries run), except ERMS and FSRM. With those, the guest kernel and libc
 * copy memory with `rep movsb`, which TCG emulates a byte at a time: measured
 * here, reading a file out of the guest went from ~85 to ~300 MiB/s without them.
 */
export const TCG_CPU = 'max,-erms,-fsrm';

/**
 * TCG's translated-code cache, in MiB. QEMU 7.2 sizes it at up to 1 GiB (an eighth
 * of the host's memory) and it fills as a busy guest runs new code: bounded here,
 * so a QEMU's memory is its guest's plus a known overhead (the jail's memory cap,
 * jail.ts). A full cache is flushed and refilled; a guest's hot code fits many times.
 */
export const TCG_CACHE_MIB = 128;

/** Machine, accelerator, CPU and memory: shared by sandboxes and the bare boot. */
export function machineArgs(accel: Accelerator, cpus: number, memoryMib: number): string[] {
  return [
    '-M',
    'microvm,acpi=off,x-option-roms=off',
    '-accel',
    accel === 'tcg' ? `tcg,thread=multi,tb-size=${TCG_CACHE_MIB}` : accel,
    '-cpu',
    accel === 'tcg' ? TCG_CPU : 'host',
    '-smp',
    String(cpus),
    '-m',
    `${memoryMib}M`,
  ];
}

/**
 * The kernel command line every guest starts with (sandboxes and the bare boot).
 * - `reboot=t panic=-1` with -no-reboot: without ACPI a power-off only halts, so
 *   the agent reboots and QEMU exits; a panic ends QEMU too.
 * - `no_timer_check`: the kernel otherwise counts timer ticks over a short busy
 *   wait to test the IO-APIC, and panics ("IO-APIC + timer doesn't work!") when
 *   a software-emulated vCPU was starved meanwhile — seen with 20 sandboxes
 *   booting at once on 2 host CPUs. The emulated timer is known to work.
 * - `tsc=reliable`: the guest's only other clocksource is jiffies, and a starved
 *   software vCPU makes the TSC watchdog give the TSC up for it: the guest then
 *   reads time in 4 ms steps (seen in a benchmark's timings). The TSC a VMM
 *   gives is steady; the watchdog's check is what is unreliable here.
 */
export const BASE_KERNEL_ARGS = ['console=ttyS0', 'reboot=t', 'panic=-1', 'no_timer_check', 'tsc=reliable', 'quiet', 'loglevel=3'];

/**
 * The QEMU command line for one sandbox. Pure, so it is unit-tested as is.
 * - microvm with acpi=off: QEMU then lists the virtio-mmio devices on the kernel
 *   command line (the kernel has VIRTIO_MMIO_CMDLINE_DEVICES).
 * - The RTC stays on: without it the kernel's boot-time CMOS read waits a full
 *   second for an update flag that never clears (the kernel has no RTC driver).
 * - QEMU listens on the agent's socket (`server=on,wait=off`): a restarted
 *   server connects again and the guest sees the host port reopen, so a VM
 *   outlives the process that started it.
 */
export function buildQemuArgs(spec: VmSpec): string[] {
  const p = qemuPaths(spec.runDir);
  const cmdline = [...BASE_KERNEL_ARGS, ...(spec.kernelArgs ?? [])];
  const machine = machineArgs(spec.accel, spec.cpus, spec.memoryMib);
  // Guest RAM is always the backend object `mem`: a saved VM's state names its RAM
  // block by that id, so a state saved from any sandbox loads into any other.
  // In a file, `share=on` writes through to it (a template); `share=off` maps it
  // copy-on-write (a clone, which must never change its template).
  const i = machine.indexOf('-M') + 1;
  machine[i] = `${machine[i]},memory-backend=mem`;
  machine.push(
    '-object',
    spec.memoryFile
      ? `memory-backend-file,id=mem,size=${spec.memoryMib}M,mem-path=${spec.memoryFile.path},share=${spec.memoryFile.shared ? 'on' : 'off'}`
      : `memory-backend-ram,id=mem,size=${spec.memoryMib}M`,
  );
  const args = [
    '-name',
    `vmbox-${spec.id}`,
    ...machine,
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-kernel',
    spec.kernelPath,
    '-initrd',
    spec.initrdPath,
    '-append',
    cmdline.join(' '),
    '-serial',
    `file:${p.consoleLog}`,
    '-qmp',
    `unix:${p.qmpSocket},server=on,wait=off`,
    '-device',
    'virtio-serial-device,max_ports=2',
    '-chardev',
    `socket,id=agent,path=${p.agentSocket},server=on,wait=off`,
    '-device',
    `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    '-device',
    'virtio-rng-device',
  ];
  if (spec.rootDisk) {
    const ro = spec.rootDisk.readOnly ? ',read-only=on' : '';
    args.push(
      '-drive',
      // A VM that only loads a state never runs: a null disk stands in, so it never opens (or locks) the real one.
      spec.loadOnly
        ? 'id=root,driver=null-co,read-zeroes=on,if=none'
        : `id=root,file=${spec.rootDisk.path},format=${spec.rootDisk.format},if=none,discard=unmap,detect-zeroes=unmap${ro}${throttling(spec.rootDisk.throttle)}`,
      '-device',
      'virtio-blk-device,drive=root',
    );
  }
  for (const [i, d] of (spec.extraDisks ?? []).entries()) {
    const ro = d.readOnly ? ',read-only=on' : '';
    args.push(
      '-drive',
      `id=disk${i},file=${d.path},format=${d.format},if=none,discard=unmap${ro}${throttling(d.throttle)}`,
      '-device',
      `virtio-blk-device,drive=disk${i}${d.serial ? `,serial=${d.serial}` : ''}`,
    );
  }
  for (const [i, s] of (spec.shares ?? []).entries()) {
    const ro = s.readOnly ? ',readonly=on' : '';
    args.push(
      '-fsdev',
      `local,id=fs${i},path=${s.hostPath},security_model=${s.security ?? 'mapped-xattr'}${ro}`,
      '-device',
      `virtio-9p-device,fsdev=fs${i},mount_tag=${s.tag}`,
    );
  }
  for (const n of spec.nics ?? []) {
    args.push(
      '-netdev',
      `stream,id=${n.id},server=off,addr.type=unix,addr.path=${n.backend.socketPath}`,
      '-device',
      `virtio-net-device,netdev=${n.id},mac=${n.mac}`,
    );
  }
  // A restored VM waits for its state (`migrate-incoming`), sent over QMP once QEMU is up.
  if (spec.restoreFrom) args.push('-incoming', 'defer');
  // -S: a loaded VM whose source was running would start on its own.
  if (spec.loadOnly) args.push('-S');
  return args;
}

/** QEMU's block throttling options for a budget (nothing for none). */
function throttling(t: DiskThrottle | undefined): string {
  return `${t?.bytesPerSec ? `,throttling.bps-total=${t.bytesPerSec}` : ''}${t?.opsPerSec ? `,throttling.iops-total=${t.opsPerSec}` : ''}`;
}
