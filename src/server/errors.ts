import type { FastifyError } from 'fastify';
import { type ErrorCode, GuestError, httpStatus, SpecError, VmboxError } from '../errors.js';

/** The API's error body: a stable code, a message that says what to do, and where when known. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  field?: string;
  path?: string;
}

/**
 * The one mapping from an error to what a client sees, for HTTP responses and
 * WebSocket error messages alike (the runtime → HTTP table lives in errors.ts).
 */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  const e = err as FastifyError;
  if (e && 'validation' in e && e.validation) {
    const v = e.validation[0];
    const where = `${e.validationContext ?? 'body'}${v?.instancePath ?? ''}`.replace(/\//g, '.');
    const extra = (v?.params as { additionalProperty?: string })?.additionalProperty;
    const message = extra ? `${where}.${extra}: is not a known field` : `${where}: ${v?.message ?? e.message}`;
    return { status: 400, body: { code: 'invalidArgument', message, field: extra ? `${where}.${extra}` : where } };
  }
  if (err instanceof SpecError) return { status: 400, body: { code: err.code, message: err.message, field: err.field } };
  if (err instanceof VmboxError) {
    const path = err instanceof GuestError && err.path ? { path: err.path } : {};
    return { status: httpStatus(err.code), body: { code: err.code, message: err.message, ...path } };
  }
  const status = e?.statusCode ?? 500;
  // Fastify's own refusals of a request (a body it cannot parse, too large, of a type no route takes: 400, 413, 415…)
  // are the client's to fix, not 'internal'.
  const code: ErrorCode = status === 404 ? 'notFound' : status >= 400 && status < 500 ? 'invalidArgument' : 'internal';
  return { status, body: { code, message: e?.message ?? String(err) } };
}
