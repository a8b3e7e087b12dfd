import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { SandboxManager } from '../../runtime/manager.js';
import { SandboxRef } from '../../spec/api.js';
import { BoundPortSchema, NetworkPolicySchema, PublishedPortSchema } from '../../spec/network.js';

type Ref = { Params: { ref: string } };
const ref = { params: SandboxRef, tags: ['network'] };
const PortRef = Type.Object({ ref: Type.String(), hostPort: Type.Integer({ minimum: 1, maximum: 65535 }) });
const PortQuery = Type.Object({ hostIp: Type.Optional(Type.String({ pattern: '^[0-9.]+$' })) }, { additionalProperties: false });

/** A running sandbox's network policy and published ports. */
export const networkRoutes =
  (m: SandboxManager): FastifyPluginAsync =>
  async (app) => {
    app.get<Ref>('/v1/sandboxes/:ref/network', { schema: ref }, async (req) => {
      const rec = m.find(req.params.ref);
      return rec.spec.network ?? { enabled: false, defaultAction: 'deny', allow: [], deny: [] };
    });
    // The policy is checked once, by the runtime (the same check and field names as a create's).
    app.put<Ref & { Body: unknown }>(
      '/v1/sandboxes/:ref/network',
      { schema: { ...ref, body: NetworkPolicySchema }, attachValidation: true },
      async (req) => m.networking.update(req.params.ref, req.body),
    );
    app.get<Ref>('/v1/sandboxes/:ref/ports', { schema: { ...ref, response: { 200: Type.Array(BoundPortSchema) } } }, async (req) =>
      m.networking.ports(req.params.ref),
    );
    app.post<Ref & { Body: unknown }>(
      '/v1/sandboxes/:ref/ports',
      { schema: { ...ref, body: PublishedPortSchema }, attachValidation: true },
      async (req, reply) => {
        reply.code(201);
        return m.networking.addPort(req.params.ref, req.body);
      },
    );
    app.delete<{ Params: { ref: string; hostPort: number }; Querystring: { hostIp?: string } }>(
      '/v1/sandboxes/:ref/ports/:hostPort',
      { schema: { params: PortRef, querystring: PortQuery, tags: ['network'] } },
      async (req) => m.networking.removePort(req.params.ref, req.params.hostPort, req.query.hostIp),
    );
  };
