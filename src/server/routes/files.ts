import { Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import { VmboxError } from '../../errors.js';
import type { SandboxManager } from '../../runtime/manager.js';
import {
  ListFilesQuery,
  MkdirBody,
  PathQuery,
  RemoveFileQuery,
  RenameBody,
  SandboxRef,
  SymlinkBody,
  WatchQuery,
  WriteQuery,
} from '../../spec/api.js';
import { errorResponse } from '../errors.js';

type Q<T> = { Params: { ref: string }; Querystring: T };

/**
 * Files in a running sandbox. Content moves as a raw byte stream both ways,
 * paced by the agent's credit: neither side ever holds a whole file.
 */
export const fileRoutes =
  (m: SandboxManager): FastifyPluginAsync =>
  async (app) => {
    const f = m.files;
    const tags = ['files'];

    // Uploads are streamed to the agent, never parsed or buffered here.
    app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

    app.get<Q<{ path: string }>>(
      '/v1/sandboxes/:ref/files/content',
      { schema: { params: SandboxRef, querystring: PathQuery, tags, description: 'Download a file (application/octet-stream)' } },
      async (req, reply) => {
        const chunks = f.read(req.params.ref, req.query.path);
        // The first chunk (or the agent's error) before any header: a missing file is a 404, not a broken 200.
        const first = await chunks.next();
        async function* all() {
          if (!first.done) yield first.value;
          yield* chunks;
        }
        reply.type('application/octet-stream');
        return reply.send(Readable.from(all(), { objectMode: false }));
      },
    );

    app.put<Q<{ path: string; mode?: number; append?: boolean; makeParents?: boolean }>>(
      '/v1/sandboxes/:ref/files/content',
      {
        schema: { params: SandboxRef, querystring: WriteQuery, tags, description: 'Upload a file (body: application/octet-stream)' },
        bodyLimit: Number.MAX_SAFE_INTEGER,
      },
      async (req) => {
        const body = req.body;
        if (!(body instanceof Readable)) throw new VmboxError('invalidArgument', 'send the content as application/octet-stream');
        const { path, mode, append, makeParents } = req.query;
        // The file appears whole or not at all: the agent writes it under a temporary name first.
        try {
          return await f.write(req.params.ref, path, body.iterator({ destroyOnReturn: false }), { mode, append, makeParents });
        } catch (err) {
          // An early error (no space): take the rest of the body before answering, so the client, still
          // sending, reads the answer rather than a connection closed under its write (EPIPE).
          await drain(body, DRAIN_MS);
          throw err;
        }
      },
    );

    app.get<Q<{ path: string }>>(
      '/v1/sandboxes/:ref/files/stat',
      { schema: { params: SandboxRef, querystring: PathQuery, tags } },
      async (req) => f.stat(req.params.ref, req.query.path),
    );

    app.get<Q<{ path: string; depth?: number }>>(
      '/v1/sandboxes/:ref/files/list',
      { schema: { params: SandboxRef, querystring: ListFilesQuery, tags } },
      async (req) => f.list(req.params.ref, req.query.path, req.query.depth ?? 1),
    );

    app.post<{ Params: { ref: string }; Body: { path: string; mode?: number } }>(
      '/v1/sandboxes/:ref/files/mkdir',
      {
        schema: {
          params: SandboxRef,
          body: MkdirBody,
          tags,
          description: 'Make a directory and its parents; created is false when it existed',
        },
      },
      async (req) => f.makeDir(req.params.ref, req.body.path, req.body.mode),
    );

    app.post<{ Params: { ref: string }; Body: { target: string; path: string } }>(
      '/v1/sandboxes/:ref/files/symlink',
      { schema: { params: SandboxRef, body: SymlinkBody, tags, description: 'Make a symbolic link at path pointing to target' } },
      async (req) => f.symlink(req.params.ref, req.body.target, req.body.path),
    );

    app.post<{ Params: { ref: string }; Body: { from: string; to: string } }>(
      '/v1/sandboxes/:ref/files/rename',
      { schema: { params: SandboxRef, body: RenameBody, tags } },
      async (req) => f.rename(req.params.ref, req.body.from, req.body.to),
    );

    app.delete<Q<{ path: string; recursive?: boolean }>>(
      '/v1/sandboxes/:ref/files',
      { schema: { params: SandboxRef, querystring: RemoveFileQuery, tags } },
      async (req, reply) => {
        await f.remove(req.params.ref, req.query.path, { recursive: req.query.recursive });
        return reply.code(204).send();
      },
    );

    // Text messages: {"type":"events","events":[...]} while watching, then
    // {"type":"end","reason"} or {"type":"error",code,message}. Close to stop.
    app.get<Q<{ path: string; recursive?: boolean }>>(
      '/v1/sandboxes/:ref/files/watch',
      { websocket: true, schema: { params: SandboxRef, querystring: WatchQuery, tags } },
      (socket, req) => {
        const send = (msg: unknown) => {
          if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg));
        };
        try {
          const w = f.watch(req.params.ref, req.query.path, { recursive: req.query.recursive }, (events) =>
            send({ type: 'events', events }),
          );
          w.ready.then(() => send({ type: 'ready' })).catch(() => {});
          w.done.then(
            (v) => {
              send({ type: 'end', reason: (v as { reason?: string })?.reason ?? 'ended' });
              socket.close(1000);
            },
            (err: Error) => {
              if (socket.readyState === socket.OPEN) {
                send({ type: 'error', ...errorResponse(err).body });
                socket.close(1011);
              }
            },
          );
          socket.on('close', () => w.stop());
        } catch (err) {
          send({ type: 'error', ...errorResponse(err).body });
          socket.close(1011);
        }
      },
    );
  };

/** How long an upload that failed early may go on sending before it is answered anyway. */
const DRAIN_MS = 30_000;

/** Reads and drops what is left of a request body (at most `ms`). */
function drain(body: Readable, ms: number): Promise<void> {
  if (body.readableEnded || body.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(done, ms);
    body.once('end', done);
    body.once('close', done);
    body.once('error', done);
    body.resume();
  });
}
