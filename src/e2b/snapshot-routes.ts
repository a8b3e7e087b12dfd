import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SpecError, VmboxError } from '../errors.js';
import type { SandboxManager } from '../runtime/manager.js';
import type { ApiKeyRecord } from '../runtime/state.js';
import type { SandboxInfo } from '../spec/sandboxes.js';
import type { SnapshotInfo } from '../spec/snapshots.js';
import type { createdShape } from './shapes.js';

export type KeyedRequest = FastifyRequest & { apiKey?: ApiKeyRecord };
type Id = { Params: { id: string } };

/** What the E2B routes share: the runtime, which sandboxes a key sees, and how a new one is answered. */
export interface E2bRouteContext {
  m: SandboxManager;
  visible(req: KeyedRequest, id: string): SandboxInfo;
  created(s: SandboxInfo): ReturnType<typeof createdShape>;
  defaultTimeoutS: number;
}

/** The label a snapshot taken through E2B's API carries: the key that took it sees it. */
export const SNAPSHOT_KEY_LABEL = 'e2b.apiKey';
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** vmbox forks at most this many copies at once. */
const MAX_FORKS = 64;

/**
 * E2B's fork and snapshots on vmbox's: `POST /sandboxes/:id/fork` (copies of a
 * running sandbox, which carries on), `POST /sandboxes/:id/snapshots` (a
 * snapshot a later create names as its template), `GET /snapshots`, and
 * `DELETE /templates/:id` (E2B's snapshots are templates). A key sees the
 * snapshots it took; an admin key sees all.
 */
export function snapshotRoutes(app: FastifyInstance, c: E2bRouteContext): void {
  const { m } = c;
  const shape = (s: SnapshotInfo) => ({ snapshotID: s.id, names: [s.name] });

  app.post<Id & { Body: { timeout?: number; count?: number } }>('/sandboxes/:id/fork', async (req, reply) => {
    const s = c.visible(req, req.params.id);
    const count = req.body?.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > MAX_FORKS) throw new SpecError('count', `must be 1 to ${MAX_FORKS}, got ${count}`);
    const timeout = req.body?.timeout ?? c.defaultTimeoutS;
    if (!Number.isInteger(timeout) || timeout < 1) throw new SpecError('timeout', `must be a whole number of seconds, at least 1`);
    const copies = await m.fork(s.id, { count }, { apiKey: (req as KeyedRequest).apiKey?.id, maxDurationMs: timeout * 1000 });
    reply.code(201);
    return copies.map((copy) => ({ sandbox: c.created(copy) }));
  });

  app.post<Id & { Body: { name?: string } }>('/sandboxes/:id/snapshots', async (req, reply) => {
    const s = c.visible(req, req.params.id);
    const name = req.body?.name;
    if (name !== undefined && !NAME.test(name))
      throw new SpecError('name', 'letters, digits, _ . - (up to 63, starting with a letter or digit); vmbox names carry no team or tag');
    // A name this key took already is taken over, as E2B assigns a new build to the existing
    // name; a name anyone else holds (another key, vmbox's own snapshots) is refused.
    const taken = name ? m.snapshots.list().find((x) => x.name === name) : undefined;
    if (taken && !mine(req as KeyedRequest, taken))
      throw new VmboxError('alreadyExists', `a snapshot named ${name} exists and is not this key's: pick another name`);
    const { snapshot } = await m.snapshots.create(s.id, {
      ...(name ? { name, force: taken !== undefined } : {}),
      labels: { [SNAPSHOT_KEY_LABEL]: (req as KeyedRequest).apiKey?.id ?? '' },
    });
    reply.code(201);
    return shape(m.snapshots.get(snapshot.id));
  });

  app.get<{ Querystring: { sandboxID?: string; name?: string; limit?: string; nextToken?: string } }>('/snapshots', async (req, reply) => {
    const q = req.query;
    const limit = Math.min(Math.max(Number(q.limit ?? 100) || 100, 1), 1000);
    let list = m.snapshots
      .list()
      .filter((s) => mine(req, s))
      .filter((s) => q.sandboxID === undefined || s.source?.id === q.sandboxID)
      .filter((s) => q.name === undefined || s.name === q.name || s.id === q.name)
      .sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id));
    if (q.nextToken) {
      const after = list.findIndex((s) => s.id === Buffer.from(q.nextToken as string, 'base64url').toString());
      list = list.slice(after + 1);
    }
    const page = list.slice(0, limit);
    if (list.length > limit) reply.header('x-next-token', Buffer.from(page[page.length - 1]?.id ?? '').toString('base64url'));
    return page.map(shape);
  });

  app.delete<Id>('/templates/:id', async (req, reply) => {
    const s = visibleSnapshot(m, req, req.params.id);
    if (!s)
      throw new VmboxError('notFound', `template or snapshot ${req.params.id} not found (vmbox serves E2B's snapshots, not its templates)`);
    m.snapshots.remove(s.id);
    return reply.code(204).send();
  });
}

/** A snapshot this key may use (it took it, or it is an admin key), by id or name. */
export function visibleSnapshot(m: SandboxManager, req: KeyedRequest, ref: string): SnapshotInfo | undefined {
  return m.snapshots.list().find((s) => (s.id === ref || s.name === ref) && mine(req, s));
}

function mine(req: KeyedRequest, s: SnapshotInfo): boolean {
  return req.apiKey?.admin === true || s.labels[SNAPSHOT_KEY_LABEL] === req.apiKey?.id;
}
