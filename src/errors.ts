/**
 * One root error with a stable string code; one subclass per case a caller can act on.
 * Messages say what to do next.
 */
export type ErrorCode =
  | 'invalidSpec'
  | 'imageNotFound'
  | 'hostSetup'
  | 'qemuMissing'
  | 'kernelBuildFailed'
  | 'bootFailed'
  | 'vmDied'
  | 'agentProtocol'
  | 'channelClosed'
  | 'commandTimeout'
  // a command that exited non-zero (the SDK's CommandExitError): the result, not a failure of vmbox
  | 'commandFailed'
  | 'aborted'
  // sandboxes kept by the server
  | 'sandboxNotFound'
  | 'sandboxAlreadyExists'
  | 'invalidState'
  | 'unauthorized'
  | 'serverUnavailable'
  /** The sandbox was stopped or removed while a call on it ran. */
  | 'sandboxStopped'
  /** The SDK's connection to the server broke (the server went away mid-call). */
  | 'connectionLost'
  /** A published port's host address is taken. */
  | 'portInUse'
  /** Nothing listens on the guest port a published port leads to. */
  | 'connectionRefused'
  // snapshots
  | 'snapshotNotFound'
  | 'snapshotAlreadyExists'
  /** A snapshot that cannot be restored here (another kernel or agent), or whose files changed. */
  | 'snapshotIncompatible'
  | 'snapshotCorrupt'
  // errors that come from inside the guest, by the agent's code
  | 'notFound'
  | 'permissionDenied'
  | 'noSpace'
  | 'isDirectory'
  | 'notDirectory'
  | 'alreadyExists'
  | 'notEmpty'
  | 'invalidArgument'
  | 'crossDevice'
  | 'ioError'
  | 'protocolError'
  // a bug or an error nobody foresaw: the message is all there is
  | 'internal';

export class VmboxError extends Error {
  override name = 'VmboxError';
  /** The guest path the error concerns, when it concerns one. */
  path?: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A spec field out of range or of the wrong type; `field` is its path, e.g. `cpus`. */
export class SpecError extends VmboxError {
  override name = 'SpecError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super('invalidSpec', `${field}: ${message}`);
  }
}

/** An error the guest agent reported, with the guest path it concerns. */
export class GuestError extends VmboxError {
  override name = 'GuestError';
  constructor(code: ErrorCode, message: string, path?: string) {
    super(code, message);
    if (path !== undefined) this.path = path;
  }
}

/** The VM stopped while something was waiting on it; carries the console's last lines. */
export class VmDiedError extends VmboxError {
  override name = 'VmDiedError';
  constructor(
    message: string,
    readonly consoleTail: string,
  ) {
    super('vmDied', consoleTail ? `${message}\n--- last console lines ---\n${consoleTail}` : message);
  }
}

/** An operation the sandbox's current state does not allow; names the state. */
export class LifecycleError extends VmboxError {
  override name = 'LifecycleError';
  constructor(
    readonly state: string,
    message: string,
  ) {
    super('invalidState', message);
  }
}

/** The HTTP status of each error code: the server maps errors with it, the SDK maps back by code. */
export function httpStatus(code: ErrorCode): number {
  switch (code) {
    case 'invalidSpec':
    case 'invalidArgument':
    case 'isDirectory':
    case 'notDirectory':
    case 'notEmpty':
    case 'crossDevice':
      return 400;
    case 'unauthorized':
      return 401;
    case 'permissionDenied':
      return 403;
    case 'sandboxNotFound':
    case 'imageNotFound':
    case 'snapshotNotFound':
    case 'notFound':
      return 404;
    case 'sandboxAlreadyExists':
    case 'snapshotAlreadyExists':
    case 'snapshotIncompatible':
    case 'alreadyExists':
    case 'invalidState':
    case 'sandboxStopped':
    case 'portInUse':
      return 409;
    case 'commandTimeout':
      return 408;
    case 'agentProtocol':
      // The guest answered with what the protocol forbids: the upstream's fault, as a gateway's.
      return 502;
    case 'noSpace':
      return 507;
    case 'snapshotCorrupt':
      return 422;
    case 'serverUnavailable':
    case 'connectionRefused':
    case 'connectionLost':
    case 'vmDied':
    case 'bootFailed':
      return 503;
    default:
      return 500;
  }
}

const guestCodes = new Set<string>([
  'notFound',
  'permissionDenied',
  'noSpace',
  'isDirectory',
  'notDirectory',
  'alreadyExists',
  'notEmpty',
  'invalidArgument',
  'crossDevice',
  'ioError',
  'protocolError',
]);

/** Maps the agent's error payload to a typed error (the agent → runtime table). */
export function fromAgentError(payload: { code?: unknown; message?: unknown; path?: unknown }): GuestError {
  const code = typeof payload.code === 'string' && guestCodes.has(payload.code) ? (payload.code as ErrorCode) : 'ioError';
  const message = typeof payload.message === 'string' ? payload.message : 'guest error';
  return new GuestError(code, message, typeof payload.path === 'string' ? payload.path : undefined);
}
