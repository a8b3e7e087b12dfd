import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { SandboxManager } from '../../runtime/manager.js';
import { SandboxRef } from '../../spec/api.js';
import { type ForkRequest, ForkRequestSchema, type SnapshotCreate, SnapshotCreateSchema } from '../../spec/snapshots.js';

type Ref = { Params: { ref: string } };
const SnapshotRef = Type.Object({ ref: Type.String({ minLength: 1, description: 'Snapshot name or id' }) });
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
