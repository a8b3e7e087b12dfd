import { availableParallelism, totalmem } from 'node:os';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { SpecError } from '../errors.js';

export const MIN_MEMORY_MIB = 64;
const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';

/**
 * The sandbox specification: the one schema behind the TypeScript type, the
 * runtime check and (later) the HTTP schema. Unknown fields are rejected.
 */
export const SandboxSpecSchema = Type.Object(
  {
    image: Type.String({ minLength: 1, default: 'base', description: 'Image name' }),
    cpus: Type.Integer({ minimum: 1, default: 1, description: 'Virtual CPUs (at most the host has)' }),
    memoryMib: Type.Integer({ minimum: MIN_MEMORY_MIB, default: 512, description: 'Guest memory in MiB' }),
    env: Type.Record(Type.String({ pattern: ENV_NAME }), Type.String(), {
      default: {},
      additionalProperties: false,
      description: 'Environment added to the image’s',
    }),
    workdir: Type.Optional(Type.String({ pattern: '^/', description: 'Absolute working directory in the guest' })),
    user: Type.Optional(Type.String({ minLength: 1, description: 'user name, uid, or uid:gid' })),
    command: Type.Optional(Type.Array(Type.String(), { minItems: 1, description: 'argv of the command to run' })),
  },
  { additionalProperties: false },
);

export type SandboxSpec = Static<typeof SandboxSpecSchema>;
export type SandboxSpecInput = Partial<SandboxSpec>;

/** This host's limits, which bound cpus and memory beyond the schema. */
export function hostLimits(): { cpus: number; memoryMib: number } {
  return { cpus: availableParallelism(), memoryMib: Math.floor(totalmem() / 1024 / 1024) };
}

/** Applies defaults and checks everything; throws SpecError naming the field and the allowed range. */
export function validateSpec(input: unknown, limits = hostLimits()): SandboxSpec {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new SpecError('spec', 'must be an object');
  const spec = Value.Default(SandboxSpecSchema, structuredClone(input)) as SandboxSpec;
  const first = Value.Errors(SandboxSpecSchema, spec).First();
  if (first) throw new SpecError(fieldName(first.path), describe(first.schema, first.value, first.message));
  if (spec.cpus > limits.cpus) throw new SpecError('cpus', `must be between 1 and ${limits.cpus} (this host's CPUs), got ${spec.cpus}`);
  if (spec.memoryMib > limits.memoryMib) {
    throw new SpecError(
      'memoryMib',
      `must be between ${MIN_MEMORY_MIB} and ${limits.memoryMib} MiB (this host's memory), got ${spec.memoryMib}`,
    );
  }
  return spec;
}

function fieldName(path: string): string {
  return path.replace(/^\//, '').replace(/\//g, '.') || 'spec';
}

function describe(schema: TSchema, value: unknown, fallback: string): string {
  const got = value === undefined ? 'nothing' : JSON.stringify(value);
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
