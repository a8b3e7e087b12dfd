import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { httpStatus, SpecError, VmboxError } from '../errors.js';
import type { SandboxManager } from '../runtime/manager.js';
import type { ApiKeyRecord } from '../runtime/state.js';
import type { NetworkPolicyInput } from '../spec/network.js';
import type { SandboxInfo } from '../spec/sandboxes.js';
import { accessToken } from './access-token.js';
import type { ApiKeys } from './api-keys.js';

/**
 * The envd version vmbox reports. E2B's SDKs refuse below 0.1.0 and switch
 * features on by version: this is the highest whose features vmbox's envd
 * (src/e2b/envd/) serves — recursive watches (0.1.4), stdin on or off (0.3.0),
 * the sandbox's default user (0.4.0), closing stdin (0.5.2), octet-stream
 * uploads (0.5.7), file metadata in user.e2b.* attributes (0.6.2), entries in
 * watch events (0.6.3), and the network-mount flag on watches (0.6.4: vmbox
 * watches whatever its guest kernel can).
 */
export const ENVD_VERSION = '0.6.4';

/** E2B's default template, `base`, is vmbox's built-in `e2b-base` (Debian with bash, python3, git, user `user`). */
const E2B_TEMPLATES: Record<string, string> = { base: 'e2b-base' };
const imageOf = (templateID: string | undefined) => E2B_TEMPLATES[templateID ?? 'base'] ?? (templateID as string);
const templateOf = (image: string) => Object.entries(E2B_TEMPLATES).find(([, i]) => i === image)?.[0] ?? image;

/** E2B's sandbox timeout when a create names none, in seconds. */
const DEFAULT_TIMEOUT_S = 300;

export interface E2bOptions {
  manager: SandboxManager;
  keys: ApiKeys;
  /** Signs each sandbox's envd access token (HMAC of its id), so tokens need no storage. */
  secret: Buffer;
}

type Keyed = FastifyRequest & { apiKey?: ApiKeyRecord };
type Id = { Params: { id: string } };

interface CreateBody {
  templateID?: string;
  timeout?: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  allow_internet_access?: boolean;
  network?: { allowOut?: string[]; denyOut?: string[] };
  secure?: boolean;
  autoPause?: boolean;
  autoPauseMemory?: boolean;
  autoResume?: { enabled?: boolean };
  mcp?: unknown;
  volumeMounts?: unknown;
}

/**
 * E2B's control-plane API (`POST /v2/sandboxes`, list, get, kill, timeout,
 * pause, connect, metrics) on vmbox's own listener, so E2B's SDKs work with
 * `E2B_API_URL` pointed here. Each call maps onto the runtime, as vmbox's own
 * routes do. Requests carry `X-API-KEY`; a key sees the sandboxes it made (an
 * admin key sees all). Errors are E2B's `{ code, message }`, `code` the status.
 */
/** The paths E2B's API serves here: they carry an API key, not vmbox's bearer token. */
export const isE2bPath = (url: string) => /^\/+(v2\/)?sandboxes(\/|\?|$)/.test(url);

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
    const created = (s: SandboxInfo) => ({
      sandboxID: s.id,
      templateID: templateOf(s.image),
      clientID: 'vmbox',
      envdVersion: ENVD_VERSION,
      envdAccessToken: token(s.id),
      domain: null,
    });

    const create = async (req: Keyed, reply: FastifyReply) => {
      const b = (req.body ?? {}) as CreateBody;
      if (b.autoResume?.enabled)
        throw new VmboxError(
          'invalidArgument',
          'autoResume is not supported by vmbox yet (nothing routes traffic to a paused sandbox): resume it with Sandbox.connect',
        );
      // `mcp` is E2B's MCP gateway: the SDK itself starts it in the sandbox after create, from the template.
      if (b.volumeMounts) throw new VmboxError('invalidArgument', 'volumeMounts are not supported by vmbox yet');
      const timeout = b.timeout ?? DEFAULT_TIMEOUT_S;
      if (!Number.isInteger(timeout) || timeout < 1)
        throw new SpecError('timeout', `must be a whole number of seconds, at least 1, got ${timeout}`);
      const info = await m.create(
        {
          image: imageOf(b.templateID),
          labels: b.metadata,
          env: b.envVars ?? {},
          maxDurationMs: timeout * 1000,
          // E2B's sandboxes are gone when they end (killed or timed out), unless they
          // pause at their timeout: with memory (vmbox's pause) or their disk alone (a stop).
          ephemeral: !b.autoPause,
          ...(b.autoPause ? { onTimeout: b.autoPauseMemory === false ? ('stop' as const) : ('pause' as const) } : {}),
          ...networkOf(b),
        },
        { apiKey: req.apiKey?.id },
      );
      reply.code(201);
      return created(info);
    };
    app.post('/sandboxes', create);
    app.post('/v2/sandboxes', create);

    const listed = (s: SandboxInfo) => ({
      sandboxID: s.id,
      templateID: templateOf(s.image),
      alias: s.name,
      clientID: 'vmbox',
      startedAt: new Date(s.startedAt ?? s.createdAt).toISOString(),
      endAt: new Date((s.startedAt ?? s.createdAt) + (s.spec.maxDurationMs ?? 0)).toISOString(),
      cpuCount: s.cpus,
      memoryMB: s.memoryMib,
      diskSizeMB: s.spec.diskMib ?? 0,
      metadata: s.labels,
      state: e2bState(s),
      envdVersion: ENVD_VERSION,
      lifecycle: { onTimeout: s.spec.onTimeout ? 'pause' : 'kill', autoResume: false },
    });
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
    app.post<Id>('/sandboxes/:id/pause', async (req, reply) => {
      const s = visible(req, req.params.id);
      if (e2bState(s) === 'paused') return reply.code(409).send({ code: 409, message: `sandbox ${s.id} is already paused` });
      await m.pause(s.id);
      return reply.code(204).send();
    });
    // Connect (and the older resume): a paused sandbox is resumed (one that paused without
    // its memory boots from its disk); the timeout only ever moves later, as E2B's does.
    const connect = async (req: Keyed & { params: { id: string }; body?: { timeout?: number } }, reply: FastifyReply) => {
      const s = visible(req, req.params.id);
      const wasPaused = e2bState(s) === 'paused';
      if (s.state === 'paused') await m.resume(s.id);
      else if (s.state === 'stopped') await m.start(s.id);
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

/** E2B's states: a sandbox kept stopped paused at its timeout without its memory. */
function e2bState(s: SandboxInfo): 'running' | 'paused' {
  return s.state === 'paused' || s.state === 'stopped' ? 'paused' : 'running';
}

const startOf = (s: SandboxInfo) => s.startedAt ?? s.createdAt;

/**
 * E2B's sandboxes reach the internet unless told not to; vmbox's are closed
 * unless given a policy. `allow_internet_access: false` closes it; `network`
 * lists outbound rules (vmbox's rule syntax: domains, CIDRs, ports).
 */
function networkOf(b: CreateBody): { network?: NetworkPolicyInput } {
  if (b.allow_internet_access === false && !b.network?.allowOut?.length) return {};
  return {
    network: {
      defaultAction: b.allow_internet_access === false ? 'deny' : 'allow',
      allow: b.network?.allowOut ?? [],
      deny: b.network?.denyOut ?? [],
    },
  };
}
