import type { IncomingMessage } from 'node:http';
import { Code, ConnectError, createContextKey, type HandlerContext } from '@connectrpc/connect';
import { type ErrorCode, httpStatus, VmboxError } from '../../errors.js';

/**
 * vmbox's error codes as E2B's envd answers them. E2B's SDKs turn each
 * Connect code (and each HTTP status of `/files`) into their own errors:
 * NotFound → NotFoundError, Unauthenticated → AuthenticationError, Unavailable
 * and 502 → "sandbox not found or timed out", DeadlineExceeded → TimeoutError.
 */
const CONNECT_CODES: Partial<Record<ErrorCode, Code>> = {
  invalidSpec: Code.InvalidArgument,
  invalidArgument: Code.InvalidArgument,
  isDirectory: Code.InvalidArgument,
  notDirectory: Code.InvalidArgument,
  notEmpty: Code.FailedPrecondition,
  crossDevice: Code.InvalidArgument,
  unauthorized: Code.Unauthenticated,
  permissionDenied: Code.PermissionDenied,
  notFound: Code.NotFound,
  alreadyExists: Code.AlreadyExists,
  noSpace: Code.ResourceExhausted,
  commandTimeout: Code.DeadlineExceeded,
  aborted: Code.Canceled,
  sandboxNotFound: Code.Unavailable,
  invalidState: Code.Unavailable,
  sandboxStopped: Code.Unavailable,
  vmDied: Code.Unavailable,
  channelClosed: Code.Unavailable,
};

export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof VmboxError) return new ConnectError(err.message, CONNECT_CODES[err.code] ?? Code.Internal);
  return new ConnectError(err instanceof Error ? err.message : String(err), Code.Internal);
}

/** `/files` and `/health` errors: E2B's `{ code, message }` with the status as code. */
export function httpError(err: unknown): { status: number; body: { code: number; message: string } } {
  // Fastify's own refusals of a request (an empty or broken body, a content type no route takes) carry their 4xx.
  const fastify = (err as { statusCode?: unknown })?.statusCode;
  const status =
    err instanceof VmboxError
      ? err.code === 'sandboxNotFound' || err.code === 'invalidState' || err.code === 'sandboxStopped'
        ? 502
        : httpStatus(err.code)
      : typeof fastify === 'number' && fastify >= 400 && fastify < 500
        ? fastify
        : 500;
  return { status, body: { code: status, message: err instanceof Error ? err.message : String(err) } };
}

/** The HTTP request under a Connect call, so a stream can end as a dead sandbox's would. */
export const rawRequest = createContextKey<IncomingMessage | undefined>(undefined);

/**
 * A sandbox that ends under a stream (killed, timed out, its VM gone) takes
 * E2B's envd with it: the client sees the connection drop, then a health check
 * saying 502, and E2B's SDKs report "the sandbox was killed or reached its end
 * of life". An end-of-stream error would read as a timeout instead.
 */
export function dropIfSandboxEnded(err: unknown, ctx: HandlerContext): void {
  if (err instanceof VmboxError && ['sandboxStopped', 'vmDied', 'channelClosed'].includes(err.code))
    ctx.values.get(rawRequest)?.socket.destroy();
}
