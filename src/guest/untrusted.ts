import { posix } from 'node:path';
import { type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { VmboxError } from '../errors.js';
import { FileStatSchema, WatchEventSchema } from '../spec/files.js';
import { ExecExitSchema, ProcessInfoSchema } from '../spec/processes.js';

/**
 * What the host accepts from the guest. Everything the agent sends is the
 * guest's word, and after a user command has run as root the guest may be
 * anyone: each payload is checked against the same schemas the API publishes,
 * and anything else is a protocol violation, which ends the connection (and
 * fails the sandbox) instead of reaching a caller.
 */
export class ProtocolViolation extends VmboxError {
  override name = 'ProtocolViolation';
  constructor(detail: string) {
    super('agentProtocol', `agent protocol violation: ${detail}`);
  }
}

/** Counts and sizes a guest reports: whole, non-negative and within what JavaScript holds exactly. */
const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

/** The disk's figures are absent when the agent cannot measure its root (statvfs failed). */
const StatsSchema = Type.Object({
  memTotalBytes: Count,
  memUsedBytes: Count,
  diskTotalBytes: Type.Optional(Count),
  diskUsedBytes: Type.Optional(Count),
  processes: Count,
});

const compiled = <T extends TSchema>(schema: T) => TypeCompiler.Compile(schema);

const checks = {
  exit: compiled(ExecExitSchema),
  started: compiled(Type.Object({ pid: Type.Integer({ minimum: 1, maximum: 2 ** 31 - 1 }) })),
  stat: compiled(FileStatSchema),
  entries: compiled(Type.Object({ entries: Type.Array(Type.Intersect([FileStatSchema, Type.Object({ name: Type.String() })])) })),
  events: compiled(Type.Object({ events: Type.Array(WatchEventSchema) })),
  processes: compiled(Type.Object({ processes: Type.Array(ProcessInfoSchema) })),
  stats: compiled(StatsSchema),
  size: compiled(Type.Object({ size: Count })),
};
export type PayloadKind = keyof typeof checks;

/** `value` as the shape `kind` names, or a violation saying which field is wrong. */
export function expectPayload<T>(kind: PayloadKind, value: unknown): T {
  const check = checks[kind];
  if (check.Check(value)) return value as T;
  const first = check.Errors(value).First();
  throw new ProtocolViolation(`a ${kind} payload with ${first ? `${first.path || 'the value'}: ${first.message}` : 'the wrong shape'}`);
}

/** A directory entry's name must name one entry of that directory: no separator, no NUL, not `.` or `..`, at most NAME_MAX bytes. */
export function checkEntryName(name: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || Buffer.byteLength(name) > 255) {
    throw new ProtocolViolation(`a directory entry named ${JSON.stringify(name.slice(0, 64))}${name.length > 64 ? '…' : ''}`);
  }
}

/** A watch event's path must lie in the watched directory (an overflow names none). */
export function checkWatchedPath(dir: string, event: { type: string; path: string }): void {
  if (event.type === 'overflow' && event.path === '') return;
  const root = posix.normalize(dir);
  const p = event.path;
  const inside = p.startsWith('/') && !p.includes('\0') && !p.split('/').includes('..');
  const under = root === '/' || posix.normalize(p) === root || posix.normalize(p).startsWith(`${root}/`);
  if (!inside || !under) throw new ProtocolViolation(`a watch event for ${JSON.stringify(p.slice(0, 128))}, outside ${root}`);
}
