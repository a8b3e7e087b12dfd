import { type Static, Type } from '@sinclair/typebox';

/**
 * The HTTP API's request and message shapes. One schema each: the route's
 * validation, the OpenAPI document and the SDK's types come from here.
 */

export const SandboxRef = Type.Object({ ref: Type.String({ description: 'Sandbox id, id prefix, or name' }) });

export const ListQuery = Type.Object(
  {
    state: Type.Optional(Type.String({ description: 'Comma-separated states to keep, e.g. running,stopped' })),
    label: Type.Optional(Type.String({ description: 'Comma-separated key=value labels that must all match' })),
  },
  { additionalProperties: false },
);

export const StopBody = Type.Object(
  { timeoutMs: Type.Optional(Type.Integer({ minimum: 0, description: 'How long the guest gets to power off (default 10000)' })) },
  { additionalProperties: false },
);

export const RemoveQuery = Type.Object(
  { force: Type.Optional(Type.Boolean({ description: 'Stop a running sandbox first (default false)' })) },
  { additionalProperties: false },
);

export const LogsQuery = Type.Object(
  {
    source: Type.Optional(Type.String({ description: 'Comma-separated: stdout, stderr, output, system (default: the first three)' })),
    sinceMs: Type.Optional(Type.Integer({ minimum: 0, description: 'Only entries at or after this time (ms since the epoch)' })),
    tail: Type.Optional(Type.Integer({ minimum: 0, description: 'Only the last N stored entries' })),
    follow: Type.Optional(Type.Boolean({ description: 'Keep the response open and stream new entries (default false)' })),
  },
  { additionalProperties: false },
);

/** The first message on an exec WebSocket. */
export const ExecStart = Type.Object(
  {
    argv: Type.Array(Type.String(), { minItems: 1, description: 'Program and arguments' }),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    cwd: Type.Optional(Type.String({ pattern: '^/' })),
    user: Type.Optional(Type.String({ minLength: 1 })),
    stdin: Type.Optional(Type.Boolean({ description: 'Open a stdin pipe (default false)' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    removeWhenDone: Type.Optional(
      Type.Boolean({ description: 'Remove the sandbox when the command ends or the client goes away (vmbox run)' }),
    ),
  },
  { additionalProperties: false },
);
export type ExecStart = Static<typeof ExecStart>;

/** Binary exec frames start with one of these bytes. */
export const StreamTag = { stdin: 0, stdout: 1, stderr: 2 } as const;

/** Text messages on an exec WebSocket. */
export type ExecClientMessage = { type: 'eof' } | { type: 'signal'; signal: number };
export type ExecServerMessage =
  | { type: 'started'; pid: number }
  | { type: 'exit'; exitCode: number; signal?: number; timedOut: boolean }
  | { type: 'error'; code: string; message: string };

export const ErrorBody = Type.Object({
  code: Type.String({ description: 'Stable error code, e.g. sandboxNotFound' }),
  message: Type.String(),
});
