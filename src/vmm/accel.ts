import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VmboxError } from '../errors.js';
import { paths } from '../paths.js';
import type { Accelerator } from './provider.js';
import { BASE_KERNEL_ARGS, machineArgs } from './qemu/args.js';
import { qemuBinary } from './qemu/provider.js';

export interface AccelVerdict {
  accel: Accelerator;
  reason: string;
}

/** A tiny guest must boot and power off under KVM within this, or KVM is not worth using. */
const PROBE_DEADLINE_MS = 4000;
const cacheFile = () => join(paths.cache(), 'accel.json');

/**
 * Chooses the accelerator. `/dev/kvm` existing is not proof KVM works: nested,
 * it can be far slower than TCG. So boot the bare guest under KVM with a
 * deadline. `VMBOX_ACCEL` overrides; the verdict is cached.
 */
export async function detectAccelerator(probe: { kernelPath: string; bareInitrd: string }): Promise<AccelVerdict> {
  const forced = process.env.VMBOX_ACCEL;
  if (forced) {
    if (forced !== 'kvm' && forced !== 'hvf' && forced !== 'tcg')
      throw new VmboxError('hostSetup', `VMBOX_ACCEL must be kvm, hvf or tcg, not '${forced}': fix or unset it`);
    return { accel: forced, reason: 'set by VMBOX_ACCEL' };
  }
  const cached = readCachedVerdict();
  if (cached) return cached;
  const verdict = await probeHost(probe);
  mkdirSync(dirname(cacheFile()), { recursive: true });
  writeFileSync(cacheFile(), JSON.stringify({ ...verdict, probedAt: new Date().toISOString() }));
  return verdict;
}

export function readCachedVerdict(): AccelVerdict | undefined {
  try {
    const v = JSON.parse(readFileSync(cacheFile(), 'utf8')) as AccelVerdict;
    return v.accel ? { accel: v.accel, reason: `${v.reason} (cached)` } : undefined;
  } catch {
    return undefined;
  }
}

async function probeHost(probe: { kernelPath: string; bareInitrd: string }): Promise<AccelVerdict> {
  if (process.platform === 'darwin') return { accel: 'hvf', reason: 'macOS: Hypervisor.framework' };
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is absent or not accessible: software emulation' };
  }
  const ms = await timeBareBoot('kvm', probe, PROBE_DEADLINE_MS);
  if (ms === undefined) {
    return {
      accel: 'tcg',
      reason: `/dev/kvm exists but a test guest did not boot under KVM within ${PROBE_DEADLINE_MS} ms (nested or broken KVM): software emulation`,
    };
  }
  return { accel: 'kvm', reason: `a test guest booted under KVM in ${Math.round(ms)} ms` };
}

/** Boots the bare guest (init powers off at once); resolves its wall time, or undefined past the deadline or on failure. */
export function timeBareBoot(
  accel: Accelerator,
  probe: { kernelPath: string; bareInitrd: string },
  deadlineMs: number,
  memoryMib = 128,
): Promise<number | undefined> {
  const args = [
    ...machineArgs(accel, 1, memoryMib),
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-kernel',
    probe.kernelPath,
    '-initrd',
    probe.bareInitrd,
    '-append',
    BASE_KERNEL_ARGS.join(' '),
  ];
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(qemuBinary(), args, { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.once('error', () => resolve(undefined));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? performance.now() - started : undefined);
    });
  });
}
