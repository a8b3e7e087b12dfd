import { randomUUID } from 'node:crypto';
import { posix } from 'node:path';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { VmboxError } from '../../errors.js';
import type { SandboxManager } from '../../runtime/manager.js';
import type { WatchEvent } from '../../spec/files.js';
import { EventQueue } from '../../util/event-queue.js';
import { EventType, type Filesystem, type FilesystemEventSchema, WatchDirResponseSchema } from '../gen/filesystem/filesystem_pb.js';
import type { EnvdAdmission, EnvdCaller } from './caller.js';
import { e2bEntry } from './entries.js';
import { dropIfSandboxEnded, toConnectError } from './errors.js';
import { type GuestUsers, resolvePath } from './guest-users.js';
import { keepalive } from './keepalive.js';

type FsEvent = MessageInitShape<typeof FilesystemEventSchema>;
type WatchItem = FsEvent | 'keepalive';

/** Events a watch may hold for a reader that is behind; past it the watch ends (ResourceExhausted). */
const MAX_PENDING_EVENTS = 10_000;
/** Polled watchers (CreateWatcher) a sandbox may have at once. */
const MAX_WATCHERS = 64;

const EVENT_TYPES: Record<Exclude<WatchEvent['type'], 'overflow'>, EventType> = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
};

interface PolledWatcher {
  sandboxId: string;
  events: FsEvent[];
  failure?: unknown;
  stop(): void;
}

/**
 * E2B's `filesystem.Filesystem` service on `manager.files`. As E2B's envd
 * does, calls run with the agent's rights and what they create belongs to the
 * caller's guest user; relative paths are under that user's home. WatchDir streams a directory's changes;
 * CreateWatcher / GetWatcherEvents / RemoveWatcher are the same watch, polled
 * (E2B's Python SDK uses them).
 */
export function filesystemService(
  m: SandboxManager,
  admission: EnvdAdmission,
  users: GuestUsers,
): ServiceImpl<typeof Filesystem> & { closeWatchers(): void } {
  const watchers = new Map<string, PolledWatcher>();
  const caller = (ctx: HandlerContext) => admission.caller(ctx.requestHeader, ctx.requestHeader.get('host') ?? undefined);
  const entry = async (c: EnvdCaller, path: string) => e2bEntry(await m.files.stat(c.sandboxId, path), await users.accounts(c.sandboxId));
  const guarded =
    <Req, R>(fn: (c: EnvdCaller, req: Req) => Promise<R>) =>
    async (req: Req, ctx: HandlerContext): Promise<R> => {
      try {
        return await fn(await caller(ctx), req);
      } catch (err) {
        throw toConnectError(err);
      }
    };
  /**
   * A watch of `path`, its events named relative to it, started (or failed)
   * before this returns. With `includeEntry`, each event whose entry is still
   * there carries it (looked up in order, so events keep theirs).
   */
  const watch = async (
    c: EnvdCaller,
    path: string,
    o: { recursive: boolean; includeEntry: boolean },
    onEvents: (events: FsEvent[]) => void,
  ) => {
    let inOrder = Promise.resolve();
    const described = async (e: WatchEvent): Promise<FsEvent> => {
      const event: FsEvent = { name: posix.relative(path, e.path), type: EVENT_TYPES[e.type as keyof typeof EVENT_TYPES] };
      if (!o.includeEntry || e.type === 'remove' || e.type === 'rename') return event;
      return entry(c, e.path).then(
        (info) => ({ ...event, entry: info }),
        () => event, // gone again since
      );
    };
    const w = m.files.watch(c.sandboxId, path, { recursive: o.recursive }, (events) => {
      const wanted = events.filter((e) => e.type !== 'overflow');
      if (!o.includeEntry)
        return onEvents(wanted.map((e) => ({ name: posix.relative(path, e.path), type: EVENT_TYPES[e.type as keyof typeof EVENT_TYPES] })));
      inOrder = inOrder.then(async () => onEvents(await Promise.all(wanted.map(described))));
    });
    try {
      await w.ready;
    } catch (err) {
      w.stop();
      throw err;
    }
    return w;
  };

  return {
    stat: guarded(async (c, req) => ({ entry: await entry(c, resolvePath(req.path, c.home)) })),

    makeDir: guarded(async (c, req) => {
      const path = resolvePath(req.path, c.home);
      const { created } = await m.files.makeDir(c.sandboxId, path, undefined, { owner: c.user });
      if (!created) throw new ConnectError(`directory ${path} already exists`, Code.AlreadyExists);
      return { entry: await entry(c, path) };
    }),

    move: guarded(async (c, req) => {
      const to = resolvePath(req.destination, c.home);
      await m.files.rename(c.sandboxId, resolvePath(req.source, c.home), to);
      return { entry: await entry(c, to) };
    }),

    listDir: guarded(async (c, req) => {
      const path = resolvePath(req.path, c.home);
      const [list, accounts] = await Promise.all([m.files.list(c.sandboxId, path, Math.max(1, req.depth)), users.accounts(c.sandboxId)]);
      return { entries: list.map((e) => e2bEntry(e, accounts)) };
    }),

    remove: guarded(async (c, req) => {
      try {
        await m.files.remove(c.sandboxId, resolvePath(req.path, c.home), { recursive: true });
      } catch (err) {
        // Removing what is not there is done, as E2B's envd (Go's os.RemoveAll) has it.
        if (!(err instanceof VmboxError && err.code === 'notFound')) throw err;
      }
      return {};
    }),

    async *watchDir(req, ctx) {
      const q = new EventQueue<WatchItem>();
      let stop: () => void = () => {};
      try {
        const c = await caller(ctx);
        const w = await watch(c, resolvePath(req.path, c.home), req, (events) => {
          for (const e of events) void q.push(e);
          if (q.size > MAX_PENDING_EVENTS) q.fail(new ConnectError('the watch fell too far behind its events', Code.ResourceExhausted));
        });
        w.done.then(
          () => q.end(),
          (err) => q.fail(err),
        );
        const quiet = keepalive<WatchItem>(q, ctx.requestHeader, 'keepalive');
        // A client that goes away ends the stream even while no event comes.
        const gone = () => q.close();
        ctx.signal.addEventListener('abort', gone, { once: true });
        stop = () => {
          ctx.signal.removeEventListener('abort', gone);
          quiet();
          w.stop();
        };
      } catch (err) {
        throw toConnectError(err);
      }
      try {
        yield create(WatchDirResponseSchema, { event: { case: 'start', value: {} } });
        for await (const item of q)
          yield create(WatchDirResponseSchema, {
            event: item === 'keepalive' ? { case: 'keepalive', value: {} } : { case: 'filesystem', value: item },
          });
        // Its deadline passed (or its client went away): said as such, not as a watch that ended.
        if (ctx.signal.aborted) throw ConnectError.from(ctx.signal.reason);
      } catch (err) {
        dropIfSandboxEnded(err, ctx);
        throw toConnectError(err);
      } finally {
        stop();
        q.close();
      }
    },

    createWatcher: guarded(async (c, req) => {
      if ([...watchers.values()].filter((w) => w.sandboxId === c.sandboxId).length >= MAX_WATCHERS)
        throw new ConnectError(`a sandbox may have ${MAX_WATCHERS} watchers at once: remove one first`, Code.ResourceExhausted);
      const id = randomUUID();
      const watcher: PolledWatcher = { sandboxId: c.sandboxId, events: [], stop: () => {} };
      // Its place is taken before the watch starts, so creates at the same time cannot pass the limit.
      watchers.set(id, watcher);
      let w: Awaited<ReturnType<typeof watch>>;
      try {
        w = await watch(c, resolvePath(req.path, c.home), req, (events) => {
          watcher.events.push(...events);
          // A reader that stopped polling loses the oldest, not the server its memory.
          if (watcher.events.length > MAX_PENDING_EVENTS) watcher.events.splice(0, watcher.events.length - MAX_PENDING_EVENTS);
        });
      } catch (err) {
        watchers.delete(id);
        throw err;
      }
      watcher.stop = () => w.stop();
      w.done.then(
        () => {},
        (err) => {
          watcher.failure = err;
        },
      );
      // A watcher whose watch ended (its sandbox went) is forgotten a minute later, polled or not.
      w.done.finally(() => setTimeout(() => watchers.delete(id), 60_000).unref()).catch(() => {});
      return { watcherId: id };
    }),

    getWatcherEvents: guarded(async (c, req) => {
      const w = polled(watchers, c, req.watcherId);
      const events = w.events.splice(0);
      if (!events.length && w.failure) {
        watchers.delete(req.watcherId);
        throw w.failure;
      }
      return { events };
    }),

    removeWatcher: guarded(async (c, req) => {
      polled(watchers, c, req.watcherId).stop();
      watchers.delete(req.watcherId);
      return {};
    }),

    closeWatchers() {
      for (const w of watchers.values()) w.stop();
      watchers.clear();
    },
  };
}

function polled(watchers: Map<string, PolledWatcher>, c: EnvdCaller, id: string): PolledWatcher {
  const w = watchers.get(id);
  if (!w || w.sandboxId !== c.sandboxId) throw new ConnectError(`watcher ${id} not found`, Code.NotFound);
  return w;
}
