import type { FastifyPluginAsync } from 'fastify';
import type { SandboxManager } from '../../runtime/manager.js';
import { ListQuery, RemoveQuery, SandboxRef, StopBody, TimeoutBody } from '../../spec/api.js';
import { CreateQuery } from '../../spec/images.js';
import { SandboxSpecSchema } from '../../spec/sandbox.js';
import type { SandboxState } from '../../spec/sandboxes.js';

type Ref = { Params: { ref: string } };

/** Each create's body as it came, before the schema's defaults. */
const asGiven = new WeakMap<object, unknown>();

/** Create, list, inspect, stop, start, restart, pause, resume, remove, metrics. */
export const sandboxRoutes =
  (m: SandboxManager): FastifyPluginAsync =>
  async (app) => {
    app.post<{ Body: unknown; Querystring: CreateQuery }>(
      '/v1/sandboxes',
      // The spec is checked once, by the runtime (the same check, code and field path whichever way a create
      // comes); the schema here documents it, and its failures are left to that check.
      {
        schema: { body: SandboxSpecSchema, querystring: CreateQuery, tags: ['sandboxes'] },
        attachValidation: true,
        // The schema's check fills in defaults; a restore must see only what the caller gave (the rest is the snapshot's).
        preValidation: async (req) => {
          asGiven.set(req.raw, structuredClone(req.body));
        },
      },
      async (req, reply) => {
        // Only the body is the runtime's to check: a bad query (?pull=bogus, an unknown field) is refused here.
        if (req.validationError && req.validationError.validationContext !== 'body') throw req.validationError;
        const abort = new AbortController();
        // The client went away mid-create (Ctrl-C): stop booting, remove what was made.
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) abort.abort();
        });
        reply.code(201);
        return m.create(asGiven.get(req.raw) ?? req.body, { signal: abort.signal, pull: req.query, hostPaths: !req.viaTcp });
      },
    );

    app.get<{ Querystring: { state?: string; label?: string } }>(
      '/v1/sandboxes',
      { schema: { querystring: ListQuery, tags: ['sandboxes'] } },
      async (req) => {
        const labels = Object.fromEntries(
          (req.query.label ?? '')
            .split(',')
            .filter(Boolean)
            .map((kv) => [kv.slice(0, kv.indexOf('=') >>> 0), kv.slice(kv.indexOf('=') + 1)]),
        );
        const states = (req.query.state ?? '').split(',').filter(Boolean) as SandboxState[];
        return m.list({ labels, states });
      },
    );

    const ref = { params: SandboxRef, tags: ['sandboxes'] };
    app.get<Ref>('/v1/sandboxes/:ref', { schema: ref }, async (req) => {
      m.touch(req.params.ref);
      return { ...m.get(req.params.ref), events: m.events(req.params.ref) };
    });
    app.post<Ref & { Body: { timeoutMs?: number } }>('/v1/sandboxes/:ref/stop', { schema: { ...ref, body: StopBody } }, async (req) =>
      m.stop(req.params.ref, { timeoutMs: req.body?.timeoutMs }),
    );
    app.post<Ref>('/v1/sandboxes/:ref/start', { schema: ref }, async (req) => m.start(req.params.ref));
    app.post<Ref>('/v1/sandboxes/:ref/restart', { schema: ref }, async (req) => m.restart(req.params.ref));
    app.post<Ref>('/v1/sandboxes/:ref/pause', { schema: ref }, async (req) => m.pause(req.params.ref));
    app.post<Ref>('/v1/sandboxes/:ref/resume', { schema: ref }, async (req) => m.resume(req.params.ref));
    app.delete<Ref & { Querystring: { force?: boolean } }>(
      '/v1/sandboxes/:ref',
      { schema: { ...ref, querystring: RemoveQuery } },
      async (req, reply) => {
        await m.remove(req.params.ref, { force: req.query.force });
        return reply.code(204).send();
      },
    );
    app.post<Ref & { Body: { timeoutMs: number } }>('/v1/sandboxes/:ref/timeout', { schema: { ...ref, body: TimeoutBody } }, async (req) =>
      m.setTimeout(req.params.ref, req.body.timeoutMs),
    );
    app.get<Ref>('/v1/sandboxes/:ref/metrics', { schema: ref }, async (req) => {
      m.touch(req.params.ref);
      return m.metrics(req.params.ref);
    });
  };
