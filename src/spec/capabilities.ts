import { Type } from '@sinclair/typebox';

/** Linux capabilities by number (linux/capability.h), named as Docker names them: without CAP_. */
export const CAPABILITIES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
] as const;
export type Capability = (typeof CAPABILITIES)[number];

/**
 * What a command holds by default: Docker's default set. What it leaves out
 * (SYS_PTRACE, SYS_ADMIN, SYS_MODULE, NET_ADMIN …) reaches past the command's
 * own processes — SYS_PTRACE into the agent itself — so it is granted only by name.
 */
export const DEFAULT_CAPABILITIES: readonly Capability[] = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
];

export const CapabilityNameSchema = Type.Union([...CAPABILITIES, 'ALL'].map((c) => Type.Literal(c)));

/**
 * The capabilities a sandbox's commands may hold, as the agent takes them: a bit per
 * capability number. `privileged` holds them all; `add` and `drop` (Docker's --cap-add
 * and --cap-drop, `ALL` for every one) change the default set, drop last.
 */
export function capabilityMask(spec: { securityProfile?: string; capAdd?: string[]; capDrop?: string[] }): number {
  const held = new Set<string>(spec.securityProfile === 'privileged' ? CAPABILITIES : DEFAULT_CAPABILITIES);
  for (const c of spec.capAdd ?? []) for (const n of c === 'ALL' ? CAPABILITIES : [c]) held.add(n);
  for (const c of spec.capDrop ?? []) for (const n of c === 'ALL' ? CAPABILITIES : [c]) held.delete(n);
  // Bits past 31: plain arithmetic, as JavaScript's bit operators are 32-bit.
  return CAPABILITIES.reduce((mask, name, bit) => (held.has(name) ? mask + 2 ** bit : mask), 0);
}
