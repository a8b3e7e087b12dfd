import type { Static, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyPluginAsync } from 'fastify';
import type { WebSocket } from 'ws';
import { VmboxError } from '../../errors.js';
import type { SandboxManager } from '../../runtime/manager.js';
import type { ExecStreams, GuestProcess } from '../../runtime/processes.js';
import {
  type ExecClientMessage,
  type ExecServerMessage,
  ExecStart,
  ProcessRef,
  RunStart,
  SandboxRef,
  SignalBody,
  StreamTag,
} from '../../spec/api.js';
import { errorResponse } from '../errors.js';

type ProcessParams = { Params: { ref: string; pid: number } };

/**
 * A process as a WebSocket. On `/exec` the first text message starts it
 * (ExecStart); on `/processes/:pid/attach` the socket takes over a running
 * one, beginning with what it wrote while nobody listened. Binary frames carry
 * a stream tag byte then raw bytes (stdin from the client, stdout/stderr from
 * the server); text messages carry control (eof, signal, resize; started,
 * exit, error). Closing the socket abandons the process: the agent kills it,
 * unless it runs in the background (and terminals do, by default).
 */
export const execRoutes =
  (m: SandboxManager): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Params: { ref: string } }>(
      '/v1/sandboxes/:ref/exec',
      { websocket: true, schema: { params: SandboxRef, tags: ['processes'] } },
      (socket, req) => {
        const ref = req.params.ref;
        serveProcess(socket, {
          start: (data, isBinary, streams) => {
            const { argv, ...opts } = parseFirst(ExecStart, 'exec', data, isBinary);
            return m.processes.exec(ref, argv, opts, streams);
          },
        });
      },
    );

    // `vmbox run`: a sandbox made for one command and owned by this socket —
    // removed when the command ends or the socket closes, mid-boot included.
    app.get('/v1/run', { websocket: true, schema: { tags: ['processes'] } }, (socket, req) => {
      const abort = new AbortController();
      let id: string | undefined;
      serveProcess(socket, {
        start: async (data, isBinary, streams) => {
          const run = parseFirst(RunStart, 'run', data, isBinary);
          const info = await m.create(run.sandbox, { signal: abort.signal, pull: run.pull, hostPaths: !req.viaTcp, owner: 'connection' });
          id = info.id;
          if (abort.signal.aborted) {
            // The client went away as the create finished: its sandbox goes now.
            await m.remove(info.id, { force: true, reason: 'its run ended' }).catch(() => {});
            throw new VmboxError('aborted', 'the client went away');
          }
          socket.send(JSON.stringify({ type: 'created', sandbox: info } satisfies ExecServerMessage));
          const { argv, ...opts } = run.exec;
          return m.processes.exec(info.id, argv, opts, streams);
        },
        ended: () => {
          abort.abort();
          if (id) m.remove(id, { force: true, reason: 'its run ended' }).catch(() => {});
        },
      });
    });

    app.get<ProcessParams>(
      '/v1/sandboxes/:ref/processes/:pid/attach',
      { websocket: true, schema: { params: ProcessRef, tags: ['processes'] } },
      (socket, req) => {
        try {
          const proc = m.processes.attach(req.params.ref, req.params.pid, streamsTo(socket));
          serveProcess(socket, { proc });
        } catch (err) {
          fail(socket, err as Error);
        }
      },
    );

    app.get<{ Params: { ref: string } }>(
      '/v1/sandboxes/:ref/processes',
      {
        schema: {
          params: SandboxRef,
          tags: ['processes'],
          description: 'Processes started through vmbox, running or waiting to be attached',
        },
      },
      async (req) => m.processes.list(req.params.ref),
    );

    app.post<ProcessParams & { Body: { signal?: number } }>(
      '/v1/sandboxes/:ref/processes/:pid/signal',
      { schema: { params: ProcessRef, body: SignalBody, tags: ['processes'] } },
      async (req) => m.processes.signal(req.params.ref, req.params.pid, req.body?.signal ?? 9),
    );
  };

/** Output of a process as tagged binary frames; the promise holds the guest back until the socket took them. */
function streamsTo(socket: WebSocket): ExecStreams {
  return {
    onStdout: (d) => sendTagged(socket, StreamTag.stdout, d),
    onStderr: (d) => sendTagged(socket, StreamTag.stderr, d),
  };
}

/** Wires a socket to a process: given one, or started by the socket's first message. */
function serveProcess(
  socket: WebSocket,
  o: {
    proc?: GuestProcess;
    start?: (data: Buffer, isBinary: boolean, streams: ExecStreams) => GuestProcess | Promise<GuestProcess>;
    ended?: () => void;
  },
): void {
  let proc: GuestProcess | undefined;
  let starting = false;
  /** What the client sent while the process was being started (a run boots a VM first). */
  const early: [Buffer, boolean][] = [];
  let finished = false;
  const send = (msg: ExecServerMessage) => {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg));
  };
  const end = () => {
    if (finished) return;
    finished = true;
    o.ended?.();
  };
  const follow = (p: GuestProcess) => {
    proc = p;
    p.pid.then((pid) => send({ type: 'started', pid })).catch(() => {});
    p.exit.then(
      (exit) => {
        send({ type: 'exit', ...exit });
        end();
        socket.close(1000);
      },
      (err: Error) => {
        fail(socket, err);
        end();
      },
    );
  };
  if (o.proc) follow(o.proc);
  socket.on('close', () => {
    if (!finished) proc?.abort(new VmboxError('aborted', 'the client went away'));
    end();
  });
  const onMessage = (data: Buffer, isBinary: boolean) => {
    try {
      if (!proc) {
        if (starting) early.push([data, isBinary]);
        if (starting || !o.start) return;
        starting = true;
        // Nothing more is read until the process exists (a run boots a VM first): stdin waits in the socket, bounded.
        socket.pause();
        const started = o.start(data, isBinary, streamsTo(socket));
        Promise.resolve(started).then(
          (p) => {
            if (finished) p.abort(new VmboxError('aborted', 'the client went away'));
            follow(p);
            for (const [d, b] of early.splice(0)) onMessage(d, b);
            socket.resume();
          },
          (err: Error) => {
            fail(socket, err);
            end();
          },
        );
        return;
      }
      if (isBinary) {
        if (data[0] !== StreamTag.stdin) throw new VmboxError('invalidArgument', 'binary frames from the client must carry stdin (tag 0)');
        proc.write(data.subarray(1)).catch(() => {});
        return;
      }
      const msg = JSON.parse(data.toString()) as ExecClientMessage;
      if (msg.type === 'eof') proc.closeStdin();
      else if (msg.type === 'signal') proc.kill(msg.signal);
      else if (msg.type === 'resize') proc.resize(msg.cols, msg.rows);
      else throw new VmboxError('invalidArgument', 'expected a message of type eof, signal or resize');
    } catch (err) {
      fail(socket, err as Error);
      end();
    }
  };
  socket.on('message', onMessage);
}

/** The socket's first message: a JSON object the schema accepts. */
function parseFirst<T extends TSchema>(schema: T, what: string, data: Buffer, isBinary: boolean): Static<T> {
  let first: unknown;
  try {
    if (isBinary) throw new Error();
    first = JSON.parse(data.toString());
  } catch {
    throw new VmboxError('invalidArgument', `the first message must be a JSON object (${what}): see /openapi.json`);
  }
  // A run's sandbox spec is the runtime's to check, as a create's is.
  const error = [...Value.Errors(schema, first)].find((e) => !(what === 'run' && e.path.startsWith('/sandbox')));
  if (error) throw new VmboxError('invalidArgument', `${what}${error.path.replace(/\//g, '.')}: ${error.message}`);
  return first as Static<T>;
}

function sendTagged(socket: WebSocket, tag: number, data: Buffer): Promise<void> | undefined {
  if (socket.readyState !== socket.OPEN) return undefined;
  const frame = Buffer.allocUnsafe(data.length + 1);
  frame[0] = tag;
  data.copy(frame, 1);
  return new Promise((resolve) => socket.send(frame, () => resolve()));
}

function fail(socket: WebSocket, err: Error): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ type: 'error', ...errorResponse(err).body }));
  socket.close(1011);
}
