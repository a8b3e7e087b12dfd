import { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { VmboxError } from '../../errors.js';
import type { SandboxManager } from '../../runtime/manager.js';
import { SandboxRef } from '../../spec/api.js';
import { type ForkRequest, ForkRequestSchema, type SnapshotCreate, SnapshotCreateSchema } from '../../spec/snapshots.js';

type Ref = { Params: { ref: string } };
const SnapshotRef = Type.Object({ ref: Type.String({ minLength: 1, description: 'Snapshot name or id' }) });
const ImportQuery = Type.Object({ name: Type.Optional(Type.String({ minLength: 1 })) }, { additionalProperties: false });
const TemplateRef = Type.Object({ key: Type.String({ pattern: '^[0-9a-f]{16}$' }) });
const TemplateWarm = Type.Object(
  {
    image: Type.String({ minLength: 1, default: 'base' }),
    cpus: Type.Optional(Type.Integer({ minimum: 1 })),
    memoryMib: Type.Optional(Type.Integer({ minimum: 64 })),
  },
  { additionalProperties: false },
);

/** Snapshots of sandboxes, forks, and the templates warm creates restore. */
export const snapshotRoutes =
  (m: SandboxManager): FastifyPluginAsync =>
  async (app) => {
    app.post<Ref & { Body: SnapshotCreate }>(
      '/v1/sandboxes/:ref/snapshots',
      { schema: { params: SandboxRef, body: SnapshotCreateSchema, tags: ['snapshots'] } },
      async (req, reply) => {
        const { snapshot, timing } = await m.snapshots.create(req.params.ref, req.body ?? {});
        reply.code(201);
        return { ...m.snapshots.get(snapshot.id), timing };
      },
    );
    app.post<Ref & { Body: ForkRequest }>(
      '/v1/sandboxes/:ref/fork',
      { schema: { params: SandboxRef, body: ForkRequestSchema, tags: ['snapshots'] } },
      async (req, reply) => {
        reply.code(201);
        return m.fork(req.params.ref, req.body ?? {});
      },
    );
    app.get('/v1/snapshots', { schema: { tags: ['snapshots'] } }, async () => m.snapshots.list());
    app.get<Ref>('/v1/snapshots/:ref', { schema: { params: SnapshotRef, tags: ['snapshots'] } }, async (req) =>
      m.snapshots.get(req.params.ref),
    );
    app.get<Ref>(
      '/v1/snapshots/:ref/export',
      { schema: { params: SnapshotRef, tags: ['snapshots'], description: 'The snapshot as a tar: manifest, memory, a standalone disk' } },
      async (req, reply) => {
        const tar = await m.snapshots.exportArchive(req.params.ref);
        reply.header('content-type', 'application/x-tar');
        return reply.send(tar);
      },
    );
    app.post<{ Querystring: { name?: string } }>(
      '/v1/snapshots/import',
      {
        schema: { querystring: ImportQuery, tags: ['snapshots'], description: 'A tar an export wrote (body: application/octet-stream)' },
        bodyLimit: Number.MAX_SAFE_INTEGER,
      },
      async (req, reply) => {
        if (!(req.body instanceof Readable)) throw new VmboxError('invalidArgument', 'send the archive as application/octet-stream');
        reply.code(201);
        return m.snapshots.importArchive(req.body, { name: req.query.name });
      },
    );
    app.delete<Ref>('/v1/snapshots/:ref', { schema: { params: SnapshotRef, tags: ['snapshots'] } }, async (req, reply) => {
      m.snapshots.remove(req.params.ref);
      return reply.code(204).send();
    });

    app.get('/v1/templates', { schema: { tags: ['snapshots'] } }, async () => m.templates.list());
    app.post<{ Body: { image: string; cpus?: number; memoryMib?: number } }>(
      '/v1/templates',
      { schema: { body: TemplateWarm, tags: ['snapshots'] } },
      async (req, reply) => {
        const t = await m.warmTemplate(req.body.image, req.body);
        reply.code(201);
        return t;
      },
    );
    app.delete<{ Params: { key: string } }>(
      '/v1/templates/:key',
      { schema: { params: TemplateRef, tags: ['snapshots'] } },
      async (req, reply) => {
        m.templates.remove(req.params.key);
        return reply.code(204).send();
      },
    );
  };
