import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { httpStatus, SpecError, VmboxError } from '../errors.js';
import type { SandboxManager } from '../runtime/manager.js';
import type { SandboxInfo } from '../spec/sandboxes.js';
import { accessToken } from './access-token.js';
import type { ApiKeys } from './api-keys.js';
import { createdShape, type E2bNetwork, e2bState, imageOf, listedShape, networkOf, startOf, templateOf } from './shapes.js';
import { type KeyedRequest, snapshotRoutes, visibleSnapshot } from './snapshot-routes.js';

/** E2B's sandbox timeout when a create names none, in seconds. */
const DEFAULT_TIMEOUT_S = 300;
/** The label that gives a vmbox volume to an E2B key (its id), for volumeMounts. */
const VOLUME_KEY_LABEL = 'e2b.apiKey';
/** No outbound traffic at all: `allow_internet_access: false` with no rule allowing any. */
const CLOSED = { defaultAction: 'deny' as const, allow: [], deny: [] };

export interface E2bOptions {
  manager: SandboxManager;
  keys: ApiKeys;
  /** Signs each sandbox's envd access token (HMAC of its id), so tokens need no storage. */
  secret: Buffer;
}

type Keyed = KeyedRequest;
type E2bNetworkUpdate = E2bNetwork['network'] & { allow_internet_access?: boolean; rules?: object; egressProxy?: unknown };
type Id = { Params: { id: string } };

interface CreateBody extends E2bNetwork {
  templateID?: string;
  timeout?: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  secure?: boolean;
  autoPause?: boolean;
  autoPauseMemory?: boolean;
  autoResume?: { enabled?: boolean };
  mcp?: unknown;
  /** E2B's volumes are vmbox's named volumes (made with vmbox volume create). */
  volumeMounts?: { name: string; path: string }[];
}

/**
 * E2B's control-plane API (`POST /v2/sandboxes`, list, get, kill, timeout,
 * pause, connect, metrics) on vmbox's own listener, so E2B's SDKs work with
 * `E2B_API_URL` pointed here. Each call maps onto the runtime, as vmbox's own
 * routes do. Requests carry `X-API-KEY`; a key sees the sandboxes it made (an
 * admin key sees all). Errors are E2B's `{ code, message }`, `code` the status.
 */
/** The paths E2B's API serves here: they carry an API key, not vmbox's bearer token. */
export const isE2bPath = (url: string) => /^\/+((v2\/)?sandboxes|snapshots|templates)(\/|\?|$)/.test(url);

export const e2bRoutes =
  (o: E2bOptions): FastifyPluginAsync =>
  async (app) => {
    const m = o.manager;
    app.addHook('onRequest', async (req: Keyed, reply) => {
      req.apiKey = o.keys.verify(req.headers['x-api-key'] as string | undefined);
      if (!req.apiKey) return reply.code(401).send({ code: 401, message: 'Invalid API key: create one with vmbox api-key create' });
    });
    app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
      const status = err instanceof VmboxError ? httpStatus(err.code) : (err.statusCode ?? 500);
      return reply.code(status).send({ code: status, message: err.message });
    });

    const token = (id: string) => accessToken(o.secret, id);
    /** The sandbox when this key may see it; a 404 otherwise, as for one that does not exist. */
    const visible = (req: Keyed, id: string): SandboxInfo => {
      const rec = m.db.find(id);
      if (!rec || rec.removing || (!req.apiKey?.admin && rec.apiKey !== req.apiKey?.id)) {
        throw new VmboxError('sandboxNotFound', `sandbox ${id} not found`);
      }
      return m.get(rec.id);
    };
    const created = (s: SandboxInfo) => createdShape(s, token(s.id));

    const create = async (req: Keyed, reply: FastifyReply) => {
      const b = (req.body ?? {}) as CreateBody;
      if (b.autoResume?.enabled)
        throw new VmboxError(
          'invalidArgument',
          'autoResume is not supported by vmbox yet (nothing routes traffic to a paused sandbox): resume it with Sandbox.connect',
        );
      // `mcp` is E2B's MCP gateway: the SDK itself starts it in the sandbox after create, from the template.

      const timeout = b.timeout ?? DEFAULT_TIMEOUT_S;
      if (!Number.isInteger(timeout) || timeout < 1)
        throw new SpecError('timeout', `must be a whole number of seconds, at least 1, got ${timeout}`);
      // E2B's volumes are vmbox's named volumes: an admin key mounts any, another key those labelled with its id.
      const mounts: unknown = b.volumeMounts ?? [];
      const wellFormed = (v: unknown) =>
        typeof v === 'object' &&
        v !== null &&
        typeof (v as { name?: unknown }).name === 'string' &&
        typeof (v as { path?: unknown }).path === 'string';
      if (!Array.isArray(mounts) || !mounts.every(wellFormed))
        throw new SpecError('volumeMounts', 'must be a list of { name, path }, each a string');
      for (const v of b.volumeMounts ?? []) {
        const vol = m.volumes.record(v.name);
        if (vol && !req.apiKey?.admin && vol.labels[VOLUME_KEY_LABEL] !== req.apiKey?.id)
          throw new VmboxError(
            'invalidArgument',
            `volume ${v.name} is not this key's: label it with vmbox volume create ${v.name} --label ${VOLUME_KEY_LABEL}=<key id> (vmbox api-key ls), or use an admin key`,
          );
      }
      // A template that names a snapshot this key took restores it (E2B's snapshots are templates).
      const snapshot = b.templateID ? visibleSnapshot(m, req, b.templateID) : undefined;
      const info = await m.create(
        {
          ...(snapshot ? { snapshot: snapshot.id } : { image: imageOf(b.templateID) }),
          labels: b.metadata,
          env: b.envVars ?? {},
          maxDurationMs: timeout * 1000,
          // E2B's sandboxes are gone when they end (killed or timed out), unless they
          // pause at their timeout: with memory (vmbox's pause) or their disk alone (a stop).
          ephemeral: !b.autoPause,
          ...(b.autoPause ? { onTimeout: b.autoPauseMemory === false ? ('stop' as const) : ('pause' as const) } : {}),
          network: networkOf(b),
          ...(b.volumeMounts?.length
            ? {
                mounts: b.volumeMounts.map((v) => ({ type: 'volume' as const, source: v.name, target: v.path, mode: 'existing' as const })),
              }
            : {}),
        },
        { apiKey: req.apiKey?.id },
      );
      reply.code(201);
      return created(info);
    };
    app.post('/sandboxes', create);
    app.post('/v2/sandboxes', create);

    const listed = listedShape;
    // A stopped sandbox is kept only when it paused at its timeout without memory: E2B calls it paused.
    const mine = (req: Keyed) =>
      m.list({ states: ['running', 'paused', 'stopped'], ...(req.apiKey?.admin ? {} : { apiKey: req.apiKey?.id }) });

    app.get('/sandboxes', async (req: Keyed) => mine(req).map(listed));
    app.get<{
      Querystring: {
        metadata?: string;
        state?: string;
        limit?: string;
        nextToken?: string;
        order?: string;
        startedAfter?: string;
        template?: string;
      };
    }>('/v2/sandboxes', async (req, reply) => {
      const q = req.query;
      const wanted = new URLSearchParams(q.metadata ?? '');
      const states = (q.state ?? 'running,paused').split(',');
      const limit = Math.min(Math.max(Number(q.limit ?? 100) || 100, 1), 1000);
      const after = q.startedAfter === undefined ? undefined : Date.parse(q.startedAfter);
      if (after !== undefined && Number.isNaN(after)) throw new SpecError('startedAfter', `not a date-time: ${q.startedAfter}`);
      if (q.order !== undefined && q.order !== 'asc' && q.order !== 'desc') throw new SpecError('order', 'must be asc or desc');
      // By start, newest first unless asked; the token is the id the next page starts after.
      const sign = q.order === 'asc' ? 1 : -1;
      let list = mine(req as Keyed)
        .filter((s) => [...wanted].every(([k, v]) => s.labels[k] === v))
        .filter((s) => states.includes(e2bState(s)))
        .filter((s) => after === undefined || startOf(s) >= after)
        .filter((s) => q.template === undefined || templateOf(s.image) === q.template || s.image === q.template)
        .sort((a, b) => sign * (startOf(a) - startOf(b)) || sign * a.id.localeCompare(b.id));
      if (q.nextToken) {
        const after = list.findIndex((s) => s.id === Buffer.from(q.nextToken as string, 'base64url').toString());
        list = list.slice(after + 1);
      }
      const page = list.slice(0, limit);
      if (list.length > limit) reply.header('x-next-token', Buffer.from(page[page.length - 1]?.id ?? '').toString('base64url'));
      reply.header('x-total-running', String(list.filter((s) => s.state === 'running').length));
      return page.map(listed);
    });

    app.get<Id>('/sandboxes/:id', async (req) => {
      const s = visible(req, req.params.id);
      return { ...listed(s), envdAccessToken: token(s.id), domain: null };
    });
    app.delete<Id>('/sandboxes/:id', async (req, reply) => {
      const s = visible(req, req.params.id);
      await m.remove(s.id, { force: true, reason: 'killed through the E2B API' });
      return reply.code(204).send();
    });
    app.post<Id & { Body: { timeout?: number } }>('/sandboxes/:id/timeout', async (req, reply) => {
      const s = visible(req, req.params.id);
      const timeout = req.body?.timeout;
      if (!Number.isInteger(timeout) || (timeout as number) < 0) throw new SpecError('timeout', 'must be a whole number of seconds');
      m.setTimeout(s.id, Math.max(1, (timeout as number) * 1000));
      return reply.code(204).send();
    });
    app.post<Id & { Body: { memory?: boolean } }>('/sandboxes/:id/pause', async (req, reply) => {
      const s = visible(req, req.params.id);
      if (e2bState(s) === 'paused') return reply.code(409).send({ code: 409, message: `sandbox ${s.id} is already paused` });
      if (req.body?.memory === false) {
        // Its disk alone: a stop that keeps the sandbox; connect boots it again.
        m.setEphemeral(s.id, false);
        await m.stop(s.id, { reason: 'paused without its memory through the E2B API' });
      } else await m.pause(s.id);
      return reply.code(204).send();
    });
    // Connect (and the older resume): a paused sandbox is resumed (one that paused without
    // its memory boots from its disk); the timeout only ever moves later, as E2B's does.
    const connect = async (req: Keyed & { params: { id: string }; body?: { timeout?: number } }, reply: FastifyReply) => {
      const s = visible(req, req.params.id);
      const wasPaused = e2bState(s) === 'paused';
      if (s.state === 'paused') await m.resume(s.id);
      else if (s.state === 'stopped') {
        await m.start(s.id);
        // Gone at its end again, unless it pauses at its timeout.
        m.setEphemeral(s.id, !s.spec.onTimeout);
      }
      const timeout = req.body?.timeout;
      if (timeout !== undefined) {
        const now = m.get(s.id);
        const endsIn = (now.startedAt ?? Date.now()) + (now.spec.maxDurationMs ?? 0) - Date.now();
        if (wasPaused || !now.spec.maxDurationMs || timeout * 1000 > endsIn) m.setTimeout(s.id, Math.max(1, timeout * 1000));
      }
      reply.code(wasPaused ? 201 : 200);
      return created(m.get(s.id));
    };
    app.post<Id & { Body: { timeout?: number } }>('/sandboxes/:id/connect', connect);
    app.post<Id & { Body: { timeout?: number } }>('/v2/sandboxes/:id/connect', connect);
    app.post<Id & { Body: { timeout?: number } }>('/sandboxes/:id/resume', connect);

    app.put<Id>('/sandboxes/:id/network', async (req, reply) => {
      const s = visible(req, req.params.id);
      const { allow_internet_access, rules: perHost, egressProxy, ...rules } = (req.body ?? {}) as E2bNetworkUpdate;
      if ((perHost && Object.keys(perHost).length) || egressProxy)
        throw new VmboxError(
          'invalidArgument',
          'per-host network rules and an egress proxy are not supported by vmbox: use allowOut and denyOut',
        );
      // Replaces the rules whole, as E2B's does; what it leaves out is cleared (open, E2B's default).
      await m.networking.update(s.id, networkOf({ allow_internet_access, network: rules }) ?? CLOSED);
      return reply.code(204).send();
    });
    app.post<Id & { Body: { duration?: number } }>('/sandboxes/:id/refreshes', async (req, reply) => {
      const s = visible(req, req.params.id);
      const duration = req.body?.duration ?? DEFAULT_TIMEOUT_S;
      if (!Number.isInteger(duration) || duration < 0 || duration > 3600) throw new SpecError('duration', 'must be 0 to 3600 seconds');
      const left = startOf(s) + (s.spec.maxDurationMs ?? 0) - Date.now();
      if (duration * 1000 > left) m.setTimeout(s.id, Math.max(1, duration * 1000));
      return reply.code(204).send();
    });

    snapshotRoutes(app, { m, visible, created, defaultTimeoutS: DEFAULT_TIMEOUT_S });

    app.get<Id & { Querystring: { start?: string; end?: string } }>('/sandboxes/:id/metrics', async (req) => {
      const s = visible(req, req.params.id);
      // The window, in unix seconds (E2B's); without one, what the sampler holds.
      const from = req.query.start === undefined ? -Infinity : Number(req.query.start) * 1000;
      const to = req.query.end === undefined ? Infinity : Number(req.query.end) * 1000;
      if (Number.isNaN(from) || Number.isNaN(to)) throw new SpecError('start', 'start and end are unix timestamps in seconds');
      const { history, latest } = await m.metrics(s.id);
      return (history.length ? history : [latest])
        .filter((x) => x.t >= from && x.t <= to)
        .map((x) => ({
          timestamp: new Date(x.t).toISOString(),
          timestampUnix: Math.floor(x.t / 1000),
          cpuCount: s.cpus,
          cpuUsedPct: x.cpuPercent,
          memUsed: x.memUsedBytes,
          memTotal: x.memTotalBytes,
          diskUsed: x.diskUsedBytes,
          diskTotal: x.diskTotalBytes,
        }));
    });
  };
