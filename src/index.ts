/** The vmbox SDK: sandboxes on a vmbox server, driven from TypeScript. */
export { ErrorCode, VmboxError } from './errors.js';
export {
  type CommandExit,
  CommandExitError,
  CommandHandle,
  type CommandResult,
  Commands,
  type ExecOptions,
  type RunOptions,
} from './sdk/commands.js';
export { type CallOptions, Connection, type ConnectionOptions } from './sdk/connection.js';
export {
  type ListOpts,
  type LogEntry,
  type LogOpts,
  type LogSource,
  type MetricsSample,
  Sandbox,
  type SandboxInfo,
  type SandboxOpts,
  type SandboxState,
} from './sdk/sandbox.js';
