import { availableParallelism, totalmem } from 'node:os';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { SpecError } from '../errors.js';
import { CapabilityNameSchema } from './capabilities.js';
import { checkMountsAndLimits, HOSTNAME, MountSchema, mountError, RlimitsSchema } from './mounts.js';
import { type NetworkPolicyInput, NetworkPolicySchema, type PublishedPortInput, PublishedPortSchema, SecretSchema } from './network.js';

export const MIN_MEMORY_MIB = 64;
/** Disk bounds: the space is sparse, so only what the guest writes costs host disk. */
export const MIN_DISK_MIB = 64;
export const MAX_DISK_MIB = 1024 * 1024;
const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';
export const SANDBOX_NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$';

const guestPath = Type.String({ pattern: '^/', description: 'Absolute path in the guest' });
const replace = Type.Optional(Type.Boolean({ description: 'Replace what is already at the path (default: refuse)' }));
const mode = Type.Optional(Type.Integer({ minimum: 0, maximum: 0o7777, description: 'Permission bits, e.g. 0o644' }));

/** One change to a sandbox's root filesystem, applied when it is prepared. */
export const PatchSchema = Type.Union([
  Type.Object(
    { op: Type.Literal('write'), path: guestPath, text: Type.Optional(Type.String()), base64: Type.Optional(Type.String()), mode, replace },
    { additionalProperties: false },
  ),
  Type.Object({ op: Type.Literal('append'), path: guestPath, text: Type.String() }, { additionalProperties: false }),
  Type.Object(
    { op: Type.Literal('copy'), from: Type.String({ minLength: 1, description: 'Host file or directory' }), path: guestPath, replace },
    { additionalProperties: false },
  ),
  Type.Object(
    { op: Type.Literal('symlink'), target: Type.String({ minLength: 1 }), path: guestPath, replace },
    { additionalProperties: false },
  ),
  Type.Object({ op: Type.Literal('mkdir'), path: guestPath, mode }, { additionalProperties: false }),
  Type.Object({ op: Type.Literal('remove'), path: guestPath }, { additionalProperties: false }),
]);
export type Patch = Static<typeof PatchSchema>;

/**
 * The sandbox specification: the one schema behind the TypeScript type, the
 * runtime check and (later) the HTTP schema. Unknown fields are rejected.
 */
export const SandboxSpecSchema = Type.Object(
  {
    image: Type.String({ minLength: 1, default: 'base', description: 'Image name' }),
    cpus: Type.Integer({ minimum: 1, default: 1, description: 'Virtual CPUs (at most the host has)' }),
    memoryMib: Type.Integer({ minimum: MIN_MEMORY_MIB, default: 512, description: 'Guest memory in MiB' }),
    diskMib: Type.Optional(
      Type.Integer({
        minimum: MIN_DISK_MIB,
        maximum: MAX_DISK_MIB,
        description: "Size of the sandbox's disk in MiB, at least the image's (default: the image's, 2048 for base)",
      }),
    ),
    env: Type.Record(Type.String({ pattern: ENV_NAME }), Type.String(), {
      default: {},
      additionalProperties: false,
      description: 'Environment added to the image’s',
    }),
    workdir: Type.Optional(Type.String({ pattern: '^/', description: 'Absolute working directory in the guest' })),
    user: Type.Optional(Type.String({ minLength: 1, description: 'user name, uid, or uid:gid' })),
    command: Type.Optional(
      Type.Array(Type.String(), {
        minItems: 1,
        description: 'The default command (argv): what `vmbox exec NAME` runs when given none',
      }),
    ),
    patches: Type.Optional(Type.Array(PatchSchema, { description: 'Changes made to the root filesystem before anything runs' })),
    name: Type.Optional(
      Type.String({ pattern: SANDBOX_NAME, description: 'Unique name (letters, digits, _ . -); default: derived from the id' }),
    ),
    labels: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z0-9_./-]{1,63}$' }), Type.String({ maxLength: 256 }), {
        additionalProperties: false,
        description: 'Free key=value labels, for filtering',
      }),
    ),
    ephemeral: Type.Optional(Type.Boolean({ description: 'Remove the sandbox entirely when it stops (default false)' })),
    maxDurationMs: Type.Optional(Type.Integer({ minimum: 1, description: 'Stop the sandbox this long after it starts' })),
    idleTimeoutMs: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Stop the sandbox after this long without an exec, file operation or API call' }),
    ),
    onIdle: Type.Optional(
      Type.Union([Type.Literal('stop'), Type.Literal('pause')], {
        description: 'What the idle timeout does: stop the sandbox (default), or pause it (resumed by the next connect)',
      }),
    ),
    onTimeout: Type.Optional(
      Type.Union([Type.Literal('stop'), Type.Literal('pause')], {
        description: 'What reaching maxDurationMs does: stop the sandbox (default), or pause it (resumed by the next connect)',
      }),
    ),
    restart: Type.Optional(
      Type.Union([Type.Literal('no'), Type.Literal('on-failure')], {
        description:
          'on-failure: a sandbox that fails (its VM died, its guest broke the protocol) starts again from its disk, after 1, 2, 4 … s (default no)',
      }),
    ),
    maxRestarts: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100,
        description: 'With restart on-failure: at most this many restarts in ten minutes (default 3)',
      }),
    ),
    snapshot: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'Restore from this snapshot (name or id): its processes, memory and files; the other fields may override its name, labels, policies, environment and network',
      }),
    ),
    network: Type.Optional(NetworkPolicySchema),
    ports: Type.Optional(
      Type.Array(PublishedPortSchema, { maxItems: 256, description: 'Host ports whose connections are carried to guest ports' }),
    ),
    secrets: Type.Optional(
      Type.Array(SecretSchema, {
        maxItems: 64,
        description: 'Values the host puts into requests to their hosts; the guest sees placeholders (needs a network)',
      }),
    ),
    metricsIntervalMs: Type.Optional(
      Type.Integer({ minimum: 0, description: 'How often metrics are sampled; 0 turns sampling off (default 1000)' }),
    ),
    mounts: Type.Optional(
      Type.Array(MountSchema, { maxItems: 32, description: 'Host directories, named volumes and tmpfs mounted in the guest' }),
    ),
    hostname: Type.Optional(Type.String({ pattern: HOSTNAME, description: "The guest's hostname (default: sandbox-derived)" })),
    rlimits: Type.Optional(RlimitsSchema),
    init: Type.Optional(
      Type.Object(
        {
          path: Type.String({
            pattern: '^(/|auto$)',
            description: "The image's init (absolute), or auto: /sbin/init, systemd or tini, the first there",
          }),
          args: Type.Optional(Type.Array(Type.String(), { description: 'Its arguments' })),
          env: Type.Optional(Type.Record(Type.String({ pattern: ENV_NAME }), Type.String(), { description: 'Its environment' })),
        },
        {
          additionalProperties: false,
          description:
            "Hand PID 1 to the image's own init once the agent has prepared the system (mounts); the agent serves on as its child",
        },
      ),
    ),
    logLevel: Type.Optional(
      Type.Union([Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug')], {
        description: "What the guest agent writes to the VM's console log (default warn; info adds each process, debug each request)",
      }),
    ),
    rootDisk: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'A host disk image (qcow2, raw or vmdk, ext4 inside) as the root instead of the image; a per-sandbox layer keeps the file unchanged',
      }),
    ),
    rootDir: Type.Optional(
      Type.String({
        minLength: 1,
        description: "A host directory as the root instead of the image (9p): the guest's writes land in it, as a bind mount's do",
      }),
    ),
    upperSizeMib: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_DISK_MIB,
        description: "MiB the sandbox may write beyond the image's own disk (the root grows to it)",
      }),
    ),
    shell: Type.Optional(Type.String({ pattern: '^/', description: 'The shell scripts run with (default /bin/sh)' })),
    scripts: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' }), Type.String({ minLength: 1 }), {
        description: 'Named shell scripts, run by name (vmbox exec NAME --script test)',
      }),
    ),
    securityProfile: Type.Optional(
      Type.Union([Type.Literal('default'), Type.Literal('restricted'), Type.Literal('privileged')], {
        description:
          "default: commands hold Docker's default capabilities (the guest's root can sudo, install packages, chown; not mount, trace other processes or load modules); restricted: also no_new_privs (sudo fails) and mounts are nosuid,nodev; privileged: every capability",
      }),
    ),
    capAdd: Type.Optional(
      Type.Array(CapabilityNameSchema, {
        uniqueItems: true,
        description: "Capabilities commands hold beyond the profile's (Docker's names: SYS_PTRACE, NET_ADMIN …, or ALL)",
      }),
    ),
    capDrop: Type.Optional(
      Type.Array(CapabilityNameSchema, {
        uniqueItems: true,
        description: 'Capabilities commands never hold (applied after capAdd; ALL for every one)',
      }),
    ),
    diskIo: Type.Optional(
      Type.Object(
        {
          bytesPerSec: Type.Optional(Type.Integer({ minimum: 1024, description: 'Bytes per second, reads and writes together' })),
          opsPerSec: Type.Optional(Type.Integer({ minimum: 1, description: 'Operations per second, reads and writes together' })),
        },
        { additionalProperties: false, description: 'I/O limits of each disk: the root and every disk volume or image' },
      ),
    ),
  },
  { additionalProperties: false },
);

export type SandboxSpec = Static<typeof SandboxSpecSchema>;
/** A spec as a caller writes it: everything with a default may be left out, the network's fields too. */
export type SandboxSpecInput = Partial<Omit<SandboxSpec, 'network' | 'ports'>> & {
  network?: NetworkPolicyInput;
  ports?: PublishedPortInput[];
};

/** This host's limits, which bound cpus and memory beyond the schema. */
export function hostLimits(): { cpus: number; memoryMib: number } {
  return { cpus: availableParallelism(), memoryMib: Math.floor(totalmem() / 1024 / 1024) };
}

/** Applies defaults and checks everything; throws SpecError naming the field and the allowed range. */
export function validateSpec(input: unknown, limits = hostLimits()): SandboxSpec {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new SpecError('spec', 'must be an object');
  const spec = Value.Default(SandboxSpecSchema, structuredClone(input)) as SandboxSpec;
  let first = Value.Errors(SandboxSpecSchema, spec).First();
  const mount = first && /^\/mounts\/\d+$/.exec(first.path);
  if (first && mount) {
    const inner = mountError(first.value);
    if (inner) first = { ...first, ...inner, path: `${mount[0]}${inner.path}` };
  }
  if (first) throw new SpecError(fieldName(first.path), describe(first.schema, first.value, first.message));
  if (spec.cpus > limits.cpus) throw new SpecError('cpus', `must be between 1 and ${limits.cpus} (this host's CPUs), got ${spec.cpus}`);
  if (spec.memoryMib > limits.memoryMib) {
    throw new SpecError(
      'memoryMib',
      `must be between ${MIN_MEMORY_MIB} and ${limits.memoryMib} MiB (this host's memory), got ${spec.memoryMib}`,
    );
  }
  checkMountsAndLimits(spec, (field, why) => {
    throw new SpecError(field, why);
  });
  return spec;
}

function fieldName(path: string): string {
  return path.replace(/^\//, '').replace(/\//g, '.') || 'spec';
}

function describe(schema: TSchema, value: unknown, fallback: string): string {
  const got = value === undefined ? 'nothing' : JSON.stringify(value);
  if (schema.type === 'integer' && typeof value === 'number' && Number.isInteger(value) && schema.maximum !== undefined) {
    return `must be between ${schema.minimum} and ${schema.maximum}, got ${got}`;
  }
  if (schema.type === 'integer' && typeof value === 'number' && Number.isInteger(value) && schema.minimum !== undefined) {
    return `must be at least ${schema.minimum}, got ${got}`;
  }
  if (schema.type === 'integer') return `must be an integer, got ${got}`;
  if (schema.pattern === '^/') return `must be an absolute path, got ${got}`;
  if (schema.pattern) return `must match ${schema.pattern}, got ${got}`;
  if (schema.minItems) return `must not be empty`;
  if (schema.minLength) return `must not be empty`;
  if (fallback.includes('Unexpected property')) {
    return schema.patternProperties?.[ENV_NAME]
      ? 'is not a valid environment variable name (letters, digits and _, not starting with a digit)'
      : 'is not a known field';
  }
  return `${fallback.toLowerCase()}, got ${got}`;
}
