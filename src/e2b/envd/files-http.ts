import type { IncomingMessage } from 'node:http';
import { posix } from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import multipart from '@fastify/multipart';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { VmboxError } from '../../errors.js';
import type { SandboxManager } from '../../runtime/manager.js';
import type { EnvdAdmission, EnvdCaller, SignedQuery } from './caller.js';
import { httpError } from './errors.js';
import { resolvePath } from './guest-users.js';

/** How long the rest of a refused upload is read away before the answer goes anyway (and the connection with it). */
const DRAIN_MS = 10_000;

interface WriteInfo {
  name: string;
  type: 'file';
  path: string;
  metadata?: Record<string, string>;
}

const METADATA_HEADER = 'x-metadata-';

/**
 * `X-Metadata-KEY: value` headers: the written files' user metadata (KEY
 * lowercased, as HTTP has it). Every upload sets it whole: none clears it.
 */
function metadataOf(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers))
    if (name.startsWith(METADATA_HEADER) && name.length > METADATA_HEADER.length && value !== undefined)
      out[name.slice(METADATA_HEADER.length)] = Array.isArray(value) ? value.join(', ') : value;
  return out;
}

/**
 * E2B's envd file transfer: `GET /files?path=` streams a guest file (gzip when
 * asked), `POST /files` writes one (`application/octet-stream`, gzip allowed)
 * or several (multipart, each part's file name its path), making parents.
 * Content flows through the agent as vmbox's own file routes move it, never
 * whole in memory. Errors are E2B's `{ code, message }`: 404 for a missing
 * file, 507 when the guest disk is full, 502 when the sandbox is not running.
 */
export const envdFileRoutes =
  (m: SandboxManager, admission: EnvdAdmission): FastifyPluginAsync =>
  async (app) => {
    await app.register(multipart, {
      // Part names are guest paths (relative ones under the user's home): keep them whole.
      preservePath: true,
      limits: { fileSize: Number.MAX_SAFE_INTEGER, files: 10_000, parts: 10_000, fieldSize: 64 * 1024 },
      throwFileSizeLimit: true,
    });
    // The body is the file: stream it to the guest as it arrives.
    app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    app.setErrorHandler(async (err, req, reply) => {
      const { status, body } = httpError(err);
      // An upload refused part-way (a full disk): the client is still sending. Read
      // the rest away first, so it gets this answer and its connection stays usable.
      if (!(await drained(req.raw, DRAIN_MS))) reply.header('connection', 'close');
      return reply.code(status).send(body);
    });

    type Q = { Querystring: SignedQuery };
    const callerOf = (req: FastifyRequest<Q>, op: 'read' | 'write') => admission.fileCaller(req.headers, req.headers.host, req.query, op);

    app.get<Q>('/files', async (req, reply) => {
      const c = await callerOf(req, 'read');
      if (!req.query.path) throw new VmboxError('invalidArgument', 'path is required');
      const path = resolvePath(req.query.path, c.home);
      const chunks = m.files.read(c.sandboxId, path);
      // The first chunk (or the error: missing, a directory, not allowed) before any header goes out.
      const first = await chunks.next();
      reply.header('content-type', 'application/octet-stream');
      reply.header('content-disposition', `attachment; filename*=UTF-8''${encodeURIComponent(posix.basename(path))}`);
      if (first.done) return reply.header('content-length', 0).send(Buffer.alloc(0));
      const body = Readable.from(
        (async function* () {
          yield first.value;
          yield* chunks;
        })(),
      );
      if (/\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
        reply.header('content-encoding', 'gzip');
        // pipeline, not pipe: a client gone mid-way ends the guest read too, and a failed read ends the response.
        const gzip = createGzip();
        pipeline(body, gzip, () => {});
        return reply.send(gzip);
      }
      return reply.send(body);
    });

    app.post<Q>('/files', async (req, reply) => {
      const c = await callerOf(req, 'write');
      const metadata = metadataOf(req.headers);
      const written: WriteInfo[] = [];
      if (req.isMultipart()) {
        for await (const part of req.parts()) {
          if (part.fieldname !== 'file') continue;
          // A file part names its path; a plain field (a string appended as `file`) takes the URL's.
          const name = req.query.path ?? (part.type === 'file' ? part.filename : undefined);
          if (!name) throw new VmboxError('invalidArgument', 'each file part needs a file name (its path) when the URL names no path');
          const content = part.type === 'file' ? part.file : Readable.from([Buffer.from(String(part.value))]);
          written.push(await write(m, c, name, content, metadata));
        }
        if (!written.length) throw new VmboxError('invalidArgument', 'no file in the form: send each as a part named file');
      } else {
        if (!req.query.path) throw new VmboxError('invalidArgument', 'path is required for an octet-stream upload');
        let body = req.body as Readable | undefined;
        if (!(body instanceof Readable))
          throw new VmboxError('invalidArgument', 'send the file as application/octet-stream or multipart/form-data');
        if (req.headers['content-encoding'] === 'gzip') body = body.pipe(createGunzip());
        written.push(await write(m, c, req.query.path, body, metadata));
      }
      return sendJson(reply, written);
    });
  };

/** One file to the guest, as the caller, parents made; an existing file is overwritten in place (E2B's watchers see a write). */
async function write(
  m: SandboxManager,
  c: EnvdCaller,
  name: string,
  content: AsyncIterable<Uint8Array>,
  metadata: Record<string, string>,
): Promise<WriteInfo> {
  const path = resolvePath(name, c.home);
  await m.files.write(c.sandboxId, path, content, { owner: c.user, makeParents: true, inPlace: true, metadata });
  return { name: posix.basename(path), type: 'file', path, ...(Object.keys(metadata).length ? { metadata } : {}) };
}

/** Resolves true once the request body has all been read (and dropped), false if that took past `ms`. */
function drained(raw: IncomingMessage, ms: number): Promise<boolean> {
  if (raw.complete) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    raw.unpipe();
    raw.on('data', () => {});
    raw.once('end', () => {
      clearTimeout(timer);
      resolve(true);
    });
    raw.once('error', () => resolve(false));
    raw.resume();
  });
}

function sendJson(reply: FastifyReply, body: unknown) {
  return reply.code(200).header('content-type', 'application/json').send(JSON.stringify(body));
}
