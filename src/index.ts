/** The vmbox SDK: sandboxes on a vmbox server, driven from TypeScript. */
export { type ErrorCode, VmboxError } from './errors.js';
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
  PortError,
  SandboxNotFoundError,
  SandboxStoppedError,
  ServerUnavailableError,
  SnapshotError,
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
export {
  type Credentials,
  type ImageDetail,
  type ImageSummary,
  Images,
  type ImagesOpts,
  type ImportOpts,
  type PruneResult,
  type PullOpts,
  type PullPolicy,
  type PullProgress,
  type RemoveResult,
} from './sdk/images.js';
export { type BoundPort, Network, type NetworkPolicy, type NetworkPolicyInput, type PortOptions, Ports } from './sdk/network.js';
export { ProcessSocket, type ProcessStreams } from './sdk/process-socket.js';
export { Pty, type PtyCreateOptions } from './sdk/pty.js';
export {
  type ForkOpts,
  type ListOpts,
  type LogEntry,
  type LogOpts,
  type LogSource,
  type MetricsSample,
  Sandbox,
  type SandboxInfo,
  type SandboxOpts,
  type SandboxState,
  type SnapshotOpts,
} from './sdk/sandbox.js';
export { type SnapshotInfo, Snapshots, type SnapshotsOpts, type TemplateInfo, Templates } from './sdk/snapshots.js';
export { type VolumeCreate, type VolumeInfo, Volumes, type VolumesOpts } from './sdk/volumes.js';
export type { EntryInfo as FileEntry, WatchEvent } from './spec/files.js';
export type { Mount, Rlimits } from './spec/mounts.js';
export type { ExecExit, ProcessInfo } from './spec/processes.js';
export type { SandboxSpec } from './spec/sandbox.js';
export type { Metrics, SandboxDetails, SandboxEvent, SandboxOrigin } from './spec/sandboxes.js';
