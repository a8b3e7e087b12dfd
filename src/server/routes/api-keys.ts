import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { ApiKeys } from '../../e2b/api-keys.js';
import { type ApiKeyCreate, ApiKeyCreateSchema } from '../../spec/api-keys.js';

const KeyRef = Type.Object({ ref: Type.String({ minLength: 1 }) });

/** API keys of the E2B API, managed through vmbox's own (its token or socket). */
export const apiKeyRoutes =
  (keys: ApiKeys): FastifyPluginAsync =>
  async (app) => {
    app.get('/v1/api-keys', { schema: { tags: ['api-keys'] } }, async () => keys.list());
    app.post<{ Body: ApiKeyCreate }>('/v1/api-keys', { schema: { body: ApiKeyCreateSchema, tags: ['api-keys'] } }, async (req, reply) => {
      reply.code(201);
      return keys.create(req.body ?? {});
    });
    app.delete<{ Params: { ref: string } }>('/v1/api-keys/:ref', { schema: { params: KeyRef, tags: ['api-keys'] } }, async (req, reply) => {
      keys.remove(req.params.ref);
      return reply.code(204).send();
    });
  };
