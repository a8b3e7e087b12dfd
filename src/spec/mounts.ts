import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

export const VOLUME_NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$';

const target = Type.String({ pattern: '^/', description: 'Absolute path in the guest where it is mounted' });
/** What every mount may ask of the guest's mount. */
const flags = {
  readOnly: Type.Optional(Type.Boolean({ description: 'Read-only (for bind and volume mounts, enforced on the host too)' })),
  noexec: Type.Optional(Type.Boolean({ description: 'No program runs from it' })),
  nosuid: Type.Optional(Type.Boolean({ description: 'Set-user-id bits are ignored' })),
  nodev: Type.Optional(Type.Boolean({ description: 'Device files do not open' })),
};

/** How the guest sees owners and modes of a shared directory's files. */
export const StatVirtualization = Type.Union([Type.Literal('strict'), Type.Literal('relaxed'), Type.Literal('off')], {
  description:
    "off (default, as Docker's bind mounts): the host's own owners and modes, a guest chown changes the host file; strict: the guest's owner, group and mode live in host xattrs (a guest chown leaves the host file's owner), refused where the host filesystem has no xattrs; relaxed: the same, falling back to the host's metadata there. With strict and relaxed, symlinks made on the host do not resolve in the guest (QEMU's mapped mode); the guest's own do",
});

/** A host directory, or a named volume, or a tmpfs, mounted in the guest. */
export const MountSchema = Type.Union([
  Type.Object(
    {
      type: Type.Literal('bind'),
      source: Type.String({ minLength: 1, description: 'Host directory (absolute, on the server’s machine)' }),
      target,
      statVirtualization: Type.Optional(StatVirtualization),
      ...flags,
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('volume'),
      source: Type.String({ pattern: VOLUME_NAME, description: 'Volume name' }),
      target,
      mode: Type.Optional(
        Type.Union([Type.Literal('existing'), Type.Literal('create'), Type.Literal('ensure-exists')], {
          description: 'existing: it must exist; create: it must not, and is made; ensure-exists (default): made when missing',
        }),
      ),
      ...flags,
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('disk'),
      source: Type.String({ minLength: 1, description: 'Host disk image: qcow2, raw or vmdk (absolute, on the server’s machine)' }),
      target,
      fstype: Type.Optional(Type.String({ pattern: '^[a-z0-9]{1,16}$', description: 'Its filesystem (default: probed, ext2/3/4)' })),
      ...flags,
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('tmpfs'),
      target,
      sizeMib: Type.Integer({ minimum: 1, description: 'Its size limit in MiB (at most the sandbox’s memory)' }),
      ...flags,
    },
    { additionalProperties: false },
  ),
]);
export type Mount = Static<typeof MountSchema>;

/** Resource limits by name (setrlimit's, without RLIMIT_), each soft and hard; `unlimited` is -1. */
export const RLIMIT_NAMES = [
  'as',
  'core',
  'cpu',
  'data',
  'fsize',
  'locks',
  'memlock',
  'msgqueue',
  'nice',
  'nofile',
  'nproc',
  'rss',
  'rtprio',
  'rttime',
  'sigpending',
  'stack',
] as const;
const limit = Type.Integer({ minimum: -1, description: '-1 for unlimited' });
const rlimit = Type.Object({ soft: limit, hard: limit }, { additionalProperties: false });
export const RlimitsSchema = Type.Object(Object.fromEntries(RLIMIT_NAMES.map((n) => [n, Type.Optional(rlimit)])), {
  additionalProperties: false,
  description: 'Limits applied to every process the sandbox starts, e.g. { nofile: { soft: 4096, hard: 8192 } }',
});
export type Rlimits = Static<typeof RlimitsSchema>;

export const HOSTNAME = '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$';

/** Guest paths no mount may cover: the system the agent runs. */
const RESERVED = ['/', '/proc', '/sys', '/dev'];

/** What the schema cannot say: targets, sizes and limits that make sense together. Throws SpecError. */
export function checkMountsAndLimits(
  spec: { mounts?: Mount[]; rlimits?: Rlimits; memoryMib: number },
  fail: (field: string, why: string) => never,
): void {
  const seen = new Map<string, number>();
  for (const [i, m] of (spec.mounts ?? []).entries()) {
    const normal = normalTarget(m.target);
    if (RESERVED.some((r) => normal === r || (r !== '/' && normal.startsWith(`${r}/`))))
      fail(`mounts.${i}.target`, `${m.target} is where the guest's own system lives (/, /proc, /sys, /dev): mount elsewhere`);
    const before = seen.get(normal);
    if (before !== undefined) fail(`mounts.${i}.target`, `${m.target} is mounts.${before}'s target too: one mount per path`);
    seen.set(normal, i);
    if (m.type === 'tmpfs' && m.sizeMib > spec.memoryMib)
      fail(`mounts.${i}.sizeMib`, `a tmpfs lives in the guest's memory: at most memoryMib (${spec.memoryMib}), got ${m.sizeMib}`);
  }
  for (const [name, l] of Object.entries(spec.rlimits ?? {})) {
    if (!l) continue;
    const soft = l.soft === -1 ? Infinity : l.soft;
    const hard = l.hard === -1 ? Infinity : l.hard;
    if (soft > hard) fail(`rlimits.${name}`, `soft (${l.soft}) is above hard (${l.hard}): the soft limit must be at most the hard one`);
  }
}

/** `/a//b/../c/` → `/a/c`. */
export function normalTarget(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return `/${parts.join('/')}`;
}

/**
 * A mount the union refused, checked against the kind it names, so the error
 * names the field (`target`, `sizeMib`), not "expected union value".
 */
export function mountError(value: unknown): { path: string; schema: TSchema; value: unknown; message: string } | undefined {
  const kind = (value as { type?: unknown } | null)?.type;
  const member = MountSchema.anyOf.find((m) => m.properties.type.const === kind);
  if (!member) return { path: '/type', schema: MountSchema, value: kind, message: 'must be bind, volume, disk or tmpfs' };
  return Value.Errors(member, value).First();
}
