/** The vmbox SDK: sandboxes on a vmbox server, driven from TypeScript. */
export { type ErrorCode, VmboxError } from './errors.js';
export type { ProcessInfo, WatchEvent } from './guest/client.js';
export {
  type CommandExit,
  CommandExitError,
  CommandHandle,
  type CommandOptions,
  type CommandResult,
  Commands,
  CommandTimeoutError,
  DEFAULT_MAX_OUTPUT_BYTES,
  type ExecOptions,
  type RunOptions,
} from './sdk/commands.js';
export { type CallOptions, Connection, type ConnectionOptions } from './sdk/connection.js';
export {
  AlreadyExistsError,
  ConnectionError,
  InvalidArgumentError,
  InvalidStateError,
  NoSpaceError,
  NotFoundError,
  PermissionDeniedError,
  SandboxNotFoundError,
  SandboxStoppedError,
  ServerUnavailableError,
  TimeoutError,
  UnauthorizedError,
} from './sdk/errors.js';
export {
  type EntryInfo,
  Files,
  type FilesystemEvent,
  type WatchHandle,
  type WatchOptions,
  type WriteData,
  type WriteInfo,
  type WriteOptions,
} from './sdk/files.js';
export { ProcessSocket, type ProcessStreams } from './sdk/process-socket.js';
export { Pty, type PtyCreateOptions } from './sdk/pty.js';
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
