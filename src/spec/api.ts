import { type Static, Type } from '@sinclair/typebox';
import { CreateQuery } from './images.js';
import type { ExecExit } from './processes.js';
import { SandboxSpecSchema } from './sandbox.js';
import type { SandboxInfo } from './sandboxes.js';

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
/** A named script, as the spec's `scripts` name them. */
export const SCRIPT_NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$';

export const ExecStart = Type.Object(
  {
    argv: Type.Optional(Type.Array(Type.String(), { minItems: 1, description: 'Program and arguments (or a script)' })),
    script: Type.Optional(
      Type.String({ pattern: SCRIPT_NAME, description: "One of the sandbox's named scripts, run by its shell (instead of argv)" }),
    ),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    cwd: Type.Optional(Type.String({ pattern: '^/' })),
    user: Type.Optional(Type.String({ minLength: 1 })),
    stdin: Type.Optional(Type.Boolean({ description: 'Open a stdin pipe (default false)' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    pty: Type.Optional(
      Type.Object(
        { cols: Type.Integer({ minimum: 1, maximum: 1000 }), rows: Type.Integer({ minimum: 1, maximum: 1000 }) },
        { additionalProperties: false, description: 'Run on a terminal of this size; output comes as stdout (logged as `output`)' },
      ),
    ),
    background: Type.Optional(
      Type.Boolean({
        description:
          'Keep the process when this socket closes; its output is kept (last 1 MiB) for an attach by pid. Default: true with pty, false otherwise',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ExecStart = Static<typeof ExecStart>;

/**
 * The first message on a run WebSocket (`vmbox run`): a sandbox made for one
 * command and owned by this connection. It is removed when the command ends
 * or the connection does (Ctrl-C, a killed client, a server restart),
 * whichever comes first; it is the only way it goes.
 */
export const RunStart = Type.Object(
  {
    sandbox: Type.Partial(SandboxSpecSchema, { description: 'The sandbox spec (defaults as for a create)' }),
    pull: Type.Optional(CreateQuery),
    exec: ExecStart,
  },
  { additionalProperties: false },
);
export type RunStart = Static<typeof RunStart>;

export const ProcessRef = Type.Object({
  ref: Type.String({ description: 'Sandbox id, id prefix, or name' }),
  pid: Type.Integer({ minimum: 1, description: 'The process id in the guest' }),
});

export const SignalBody = Type.Object(
  { signal: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'Signal number (default 9, SIGKILL)' })) },
  { additionalProperties: false },
);

export const TimeoutBody = Type.Object(
  { timeoutMs: Type.Integer({ minimum: 0, description: 'Stop the sandbox this long from now (0: now)' }) },
  { additionalProperties: false },
);

export const PathQuery = Type.Object(
  { path: Type.String({ pattern: '^/', description: 'Absolute path in the guest' }) },
  { additionalProperties: false },
);

export const ListFilesQuery = Type.Object(
  {
    path: Type.String({ pattern: '^/' }),
    depth: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'How many levels to descend (default 1)' })),
  },
  { additionalProperties: false },
);

export const WriteQuery = Type.Object(
  {
    path: Type.String({ pattern: '^/' }),
    mode: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 0o7777, description: 'Permission bits (default: a replaced file’s own, else 0644)' }),
    ),
    append: Type.Optional(Type.Boolean({ description: 'Append instead of replacing (default false)' })),
    makeParents: Type.Optional(
      Type.Boolean({ description: 'Make missing parent directories (default true); false refuses a missing parent' }),
    ),
  },
  { additionalProperties: false },
);

export const RemoveFileQuery = Type.Object(
  {
    path: Type.String({ pattern: '^/' }),
    recursive: Type.Optional(Type.Boolean({ description: 'Remove a directory and everything in it (default true)' })),
  },
  { additionalProperties: false },
);

export const MkdirBody = Type.Object(
  {
    path: Type.String({ pattern: '^/' }),
    mode: Type.Optional(Type.Integer({ minimum: 0, maximum: 0o7777, description: 'default 0755' })),
  },
  { additionalProperties: false },
);

export const RenameBody = Type.Object(
  { from: Type.String({ pattern: '^/' }), to: Type.String({ pattern: '^/' }) },
  { additionalProperties: false },
);

export const SymlinkBody = Type.Object(
  { target: Type.String({ minLength: 1, description: 'What the link points to, kept as given' }), path: Type.String({ pattern: '^/' }) },
  { additionalProperties: false },
);

export const WatchQuery = Type.Object(
  {
    path: Type.String({ pattern: '^/' }),
    recursive: Type.Optional(Type.Boolean({ description: 'Watch every directory below too (default false)' })),
  },
  { additionalProperties: false },
);

/** Binary exec frames start with one of these bytes. */
export const StreamTag = { stdin: 0, stdout: 1, stderr: 2 } as const;

/** Text messages on an exec WebSocket. */
export type ExecClientMessage = { type: 'eof' } | { type: 'signal'; signal: number } | { type: 'resize'; cols: number; rows: number };
export type ExecServerMessage =
  | { type: 'created'; sandbox: SandboxInfo }
  | { type: 'started'; pid: number }
  | ({ type: 'exit' } & ExecExit)
  | { type: 'error'; code: string; message: string; path?: string };

export const ErrorBody = Type.Object({
  code: Type.String({ description: 'Stable error code, e.g. sandboxNotFound' }),
  message: Type.String(),
});
