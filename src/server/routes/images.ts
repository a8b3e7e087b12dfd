import { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { VmboxError } from '../../errors.js';
import type { ImageService } from '../../runtime/images.js';
import {
  ImageDetail,
  ImageRef,
  ImageSummary,
  ImportQuery,
  PruneResult,
  PullBody,
  type PullBody as PullBodyType,
  type PullMessage,
  RemoveImageQuery,
  RemoveResult,
} from '../../spec/images.js';
import { errorResponse } from '../errors.js';

type Ref = { Params: { reference: string } };

/**
 * Images on the server: pull (progress as NDJSON), list, inspect, import
 * (the archive streamed as the request body), remove, prune.
 *
 * A pull's progress is a chunked HTTP response of NDJSON lines, as logs with
 * `follow` are: it flows one way, passes any HTTP proxy or router unchanged,
 * and needs no upgrade; a bad request still gets a plain error status.
 */
export const imageRoutes =
  (images: ImageService): FastifyPluginAsync =>
  async (app) => {
    const tags = ['images'];
    // The archive goes to a file as it arrives, never held whole in memory.
    app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

    app.post<{ Body: PullBodyType }>(
      '/v1/images/pull',
      { schema: { body: PullBody, tags, description: 'Pull an image; the answer is NDJSON: manifest, progress…, then done or error' } },
      async (req, reply) => {
        images.checkReference(req.body.reference); // a bad reference is a 400, before the stream starts
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
        const send = (m: PullMessage) => {
          if (!res.destroyed) res.write(`${JSON.stringify(m)}\n`);
        };
        try {
          send({ type: 'done', image: await images.pull(req.body, send) });
        } catch (err) {
          const { body } = errorResponse(err);
          if (body.code === 'internal') app.log.error(err);
          send({ type: 'error', code: body.code, message: body.message });
        }
        res.end();
      },
    );

    app.get('/v1/images', { schema: { tags, response: { 200: Type.Array(ImageSummary) } } }, async () => images.list());

    app.get<Ref>('/v1/images/:reference', { schema: { params: ImageRef, tags, response: { 200: ImageDetail } } }, async (req) =>
      images.inspect(req.params.reference),
    );

    app.post<{ Querystring: { name?: string } }>(
      '/v1/images/import',
      {
        schema: {
          querystring: ImportQuery,
          tags,
          description: 'Import a rootfs tarball, an OCI layout (as a tar) or a docker save archive (body: application/octet-stream)',
          response: { 201: ImageDetail },
        },
        bodyLimit: Number.MAX_SAFE_INTEGER,
      },
      async (req, reply) => {
        if (!(req.body instanceof Readable)) throw new VmboxError('invalidArgument', 'send the archive as application/octet-stream');
        const image = await images.import(req.body, req.query.name);
        reply.code(201);
        return image;
      },
    );

    app.delete<Ref & { Querystring: { force?: boolean } }>(
      '/v1/images/:reference',
      { schema: { params: ImageRef, querystring: RemoveImageQuery, tags, response: { 200: RemoveResult } } },
      async (req) => images.remove(req.params.reference, { force: req.query.force }),
    );

    app.post('/v1/images/prune', { schema: { tags, response: { 200: PruneResult } } }, async () => images.prune());
  };
