import type { FastifyPluginAsync } from 'fastify';
import { VmboxError } from '../../errors.js';
import { effectiveSources } from '../../runtime/logs.js';
import type { SandboxManager } from '../../runtime/manager.js';
import { LogsQuery, SandboxRef } from '../../spec/api.js';
import { LOG_SOURCES, type LogEntry, type LogSource } from '../../spec/sandboxes.js';

type Query = { source?: string; sinceMs?: number; tail?: number; follow?: boolean };

/** A sandbox's log as NDJSON; with `follow`, the response stays open and streams new entries. */
export const logRoutes =
  (m: SandboxManager): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Params: { ref: string }; Querystring: Query }>(
      '/v1/sandboxes/:ref/logs',
      { schema: { params: SandboxRef, querystring: LogsQuery, tags: ['sandboxes'] } },
      async (req, reply) => {
        m.touch(req.params.ref);
        const sources = (req.query.source ?? '').split(',').filter(Boolean) as LogSource[];
        const unknown = sources.find((s) => !LOG_SOURCES.includes(s));
        if (unknown) throw new VmboxError('invalidArgument', `source ${unknown}: expected ${LOG_SOURCES.join(', ')}`);
        const stored = m.readLogs(req.params.ref, { sinceMs: req.query.sinceMs, sources, tail: req.query.tail });
        const line = (e: LogEntry) => `${JSON.stringify(e)}\n`;
        if (!req.query.follow) {
          reply.type('application/x-ndjson');
          return stored.map(line).join('');
        }
        const want = effectiveSources(sources);
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
        res.flushHeaders(); // the client's request resolves now, not at the first entry
        for (const e of stored) res.write(line(e));
        const stop = m.followLogs(
          req.params.ref,
          (e) => {
            if (want.has(e.source)) res.write(line(e));
          },
          () => res.end(),
        );
        res.once('close', stop);
      },
    );
  };
