import { type ErrorCode, VmboxError } from '../errors.js';

/**
 * Typed errors of the SDK. Each has a stable `code` (the API's), so callers
 * can branch with `instanceof` or on `err.code`; `errorFromApi` is the one
 * table from API codes to classes.
 */
/**
 * An SDK error whose class decides its code: the first of its `codes` unless
 * the API named a more precise one of them (e.g. `isDirectory` for an
 * InvalidArgumentError). A code the class does not list is a bug, not a guess.
 */
abstract class PinnedError extends VmboxError {
  static readonly codes: readonly ErrorCode[] = [];
  constructor(message: string, options?: { code?: ErrorCode; cause?: unknown }) {
    const codes = (new.target as unknown as { codes: readonly ErrorCode[] }).codes;
    const code = options?.code ?? (codes[0] as ErrorCode);
    if (!codes.includes(code)) throw new VmboxError('internal', `${new.target.name} does not carry the code ${code}`);
    super(code, message, options);
  }
}

export class SandboxNotFoundError extends PinnedError {
  override name = 'SandboxNotFoundError';
  static override readonly codes: readonly ErrorCode[] = ['sandboxNotFound'];
}
/** A guest path that does not exist; `path` names it. */
export class NotFoundError extends PinnedError {
  override name = 'NotFoundError';
  static override readonly codes: readonly ErrorCode[] = ['notFound', 'imageNotFound'];
}
export class PermissionDeniedError extends PinnedError {
  override name = 'PermissionDeniedError';
  static override readonly codes: readonly ErrorCode[] = ['permissionDenied'];
}
export class InvalidArgumentError extends PinnedError {
  override name = 'InvalidArgumentError';
  static override readonly codes: readonly ErrorCode[] = [
    'invalidArgument',
    'invalidSpec',
    'isDirectory',
    'notDirectory',
    'notEmpty',
    'crossDevice',
  ];
}
export class AlreadyExistsError extends PinnedError {
  override name = 'AlreadyExistsError';
  static override readonly codes: readonly ErrorCode[] = ['alreadyExists', 'sandboxAlreadyExists'];
}
/** The operation is not allowed in the sandbox's (or process's) current state. */
export class InvalidStateError extends PinnedError {
  override name = 'InvalidStateError';
  static override readonly codes: readonly ErrorCode[] = ['invalidState'];
}
/** A command or a call ran out of time. */
export class TimeoutError extends PinnedError {
  override name = 'TimeoutError';
  static override readonly codes: readonly ErrorCode[] = ['commandTimeout'];
}
export class UnauthorizedError extends PinnedError {
  override name = 'UnauthorizedError';
  static override readonly codes: readonly ErrorCode[] = ['unauthorized'];
}
export class ServerUnavailableError extends PinnedError {
  override name = 'ServerUnavailableError';
  static override readonly codes: readonly ErrorCode[] = ['serverUnavailable'];
}
/**
 * The connection to the server broke while a call was in flight (the server
 * was killed or restarted). `reason` is the transport's word for it, e.g.
 * `ECONNRESET`, or `closed` for a socket that ended mid-call. The call's
 * outcome is unknown; the next call reconnects (and starts the local server
 * again when it is the one this SDK started).
 */
export class ConnectionError extends VmboxError {
  override name = 'ConnectionError';
  constructor(
    message: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super('connectionLost', message, options);
  }
}
/** The sandbox was stopped or removed while the call ran; the message says why. */
export class SandboxStoppedError extends PinnedError {
  override name = 'SandboxStoppedError';
  static override readonly codes: readonly ErrorCode[] = ['sandboxStopped'];
}
export class NoSpaceError extends PinnedError {
  override name = 'NoSpaceError';
  static override readonly codes: readonly ErrorCode[] = ['noSpace'];
}

/** A published port's host address is taken, or nothing listens on its guest port. */
export class PortError extends PinnedError {
  override name = 'PortError';
  static override readonly codes: readonly ErrorCode[] = ['portInUse', 'connectionRefused'];
}

/** A snapshot that is not there, cannot be restored here, or whose files changed since it was made. */
export class SnapshotError extends PinnedError {
  override name = 'SnapshotError';
  static override readonly codes: readonly ErrorCode[] = [
    'snapshotNotFound',
    'snapshotIncompatible',
    'snapshotCorrupt',
    'snapshotAlreadyExists',
  ];
}

type ErrorClass = (new (message: string, options?: { code?: ErrorCode }) => VmboxError) & { codes: readonly ErrorCode[] };

/** The one table from API codes to classes, made from each class's own codes. */
const byCode: Partial<Record<ErrorCode, ErrorClass>> = {};
for (const Cls of [
  SandboxNotFoundError,
  NotFoundError,
  PermissionDeniedError,
  InvalidArgumentError,
  AlreadyExistsError,
  InvalidStateError,
  TimeoutError,
  UnauthorizedError,
  ServerUnavailableError,
  SandboxStoppedError,
  NoSpaceError,
  PortError,
  SnapshotError,
] as ErrorClass[]) {
  for (const code of Cls.codes) byCode[code] ??= Cls;
}

/** The SDK error for an API error body `{code, message, path}`. */
export function errorFromApi(code: string, message: string, path?: string): VmboxError {
  const Cls = byCode[code as ErrorCode];
  const err = Cls ? new Cls(message, { code: code as ErrorCode }) : new VmboxError(code as ErrorCode, message);
  if (path !== undefined) err.path = path;
  return err;
}
