import { type ErrorCode, VmboxError } from '../errors.js';

/**
 * Typed errors of the SDK. Each has a stable `code` (the API's), so callers
 * can branch with `instanceof` or on `err.code`; `errorFromApi` is the one
 * table from API codes to classes.
 */
export class SandboxNotFoundError extends VmboxError {
  override name = 'SandboxNotFoundError';
}
/** A guest path that does not exist; `path` names it. */
export class NotFoundError extends VmboxError {
  override name = 'NotFoundError';
}
export class PermissionDeniedError extends VmboxError {
  override name = 'PermissionDeniedError';
}
export class InvalidArgumentError extends VmboxError {
  override name = 'InvalidArgumentError';
}
export class AlreadyExistsError extends VmboxError {
  override name = 'AlreadyExistsError';
}
/** The operation is not allowed in the sandbox's (or process's) current state. */
export class InvalidStateError extends VmboxError {
  override name = 'InvalidStateError';
}
/** A command or a call ran out of time. */
export class TimeoutError extends VmboxError {
  override name = 'TimeoutError';
}
export class UnauthorizedError extends VmboxError {
  override name = 'UnauthorizedError';
}
export class ServerUnavailableError extends VmboxError {
  override name = 'ServerUnavailableError';
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
export class SandboxStoppedError extends VmboxError {
  override name = 'SandboxStoppedError';
}
export class NoSpaceError extends VmboxError {
  override name = 'NoSpaceError';
}

type ErrorClass = new (code: ErrorCode, message: string) => VmboxError;

const byCode: Partial<Record<ErrorCode, ErrorClass>> = {
  sandboxNotFound: SandboxNotFoundError,
  imageNotFound: NotFoundError,
  notFound: NotFoundError,
  permissionDenied: PermissionDeniedError,
  invalidArgument: InvalidArgumentError,
  invalidSpec: InvalidArgumentError,
  isDirectory: InvalidArgumentError,
  notDirectory: InvalidArgumentError,
  notEmpty: InvalidArgumentError,
  crossDevice: InvalidArgumentError,
  alreadyExists: AlreadyExistsError,
  sandboxAlreadyExists: AlreadyExistsError,
  invalidState: InvalidStateError,
  commandTimeout: TimeoutError,
  unauthorized: UnauthorizedError,
  serverUnavailable: ServerUnavailableError,
  sandboxStopped: SandboxStoppedError,
  noSpace: NoSpaceError,
};

/** The SDK error for an API error body `{code, message, path}`. */
export function errorFromApi(code: string, message: string, path?: string): VmboxError {
  const Cls = byCode[code as ErrorCode] ?? VmboxError;
  const err = new Cls(code as ErrorCode, message);
  if (path !== undefined) err.path = path;
  return err;
}
