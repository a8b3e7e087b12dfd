import { type Static, Type } from '@sinclair/typebox';

/** How a command ended: the same shape from the agent, over the API, and in the SDK's result. */
export const ExecExitSchema = Type.Object({
  exitCode: Type.Integer({ description: '128+N when killed by signal N' }),
  signal: Type.Optional(Type.Integer({ description: 'The signal that killed it' })),
  timedOut: Type.Boolean({ description: 'Killed because it ran past its timeoutMs' }),
  oomKilled: Type.Optional(
    Type.Boolean({ description: "The guest's OOM killer took the process or one of its descendants (absent: it did not)" }),
  ),
});
export type ExecExit = Static<typeof ExecExitSchema>;

/** A process started through vmbox, as the agent lists it. */
export const ProcessInfoSchema = Type.Object({
  pid: Type.Integer(),
  argv: Type.Array(Type.String()),
  cwd: Type.String(),
  pty: Type.Boolean(),
  background: Type.Boolean(),
  attached: Type.Boolean({ description: 'Whether a client streams it now' }),
  exited: Type.Boolean(),
  exitCode: Type.Optional(Type.Integer()),
});
export type ProcessInfo = Static<typeof ProcessInfoSchema>;
