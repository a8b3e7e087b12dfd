import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Volumes } from '../../runtime/volumes.js';
import { type VolumeCreate, VolumeCreateSchema, VolumeInfoSchema } from '../../spec/volumes.js';

const Name = Type.Object({ name: Type.String({ minLength: 1 }) });

/** Named volumes: made, listed, inspected, removed (never while mounted), pruned. */
export const volumeRoutes =
  (volumes: Volumes): FastifyPluginAsync =>
  async (app) => {
    const tags = ['volumes'];
    app.get('/v1/volumes', { schema: { tags, response: { 200: Type.Array(VolumeInfoSchema) } } }, async () => volumes.list());
    app.post<{ Body: VolumeCreate }>('/v1/volumes', { schema: { body: VolumeCreateSchema, tags } }, async (req, reply) => {
      reply.code(201);
      return volumes.create(req.body);
    });
    app.get<{ Params: { name: string } }>('/v1/volumes/:name', { schema: { params: Name, tags } }, async (req) =>
      volumes.get(req.params.name),
    );
    app.delete<{ Params: { name: string } }>('/v1/volumes/:name', { schema: { params: Name, tags } }, async (req, reply) => {
      volumes.remove(req.params.name);
      return reply.code(204).send();
    });
    app.post('/v1/volumes/prune', { schema: { tags } }, async () => ({ removed: volumes.prune() }));
  };
