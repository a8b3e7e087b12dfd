import { Value } from '@sinclair/typebox/value';
import type { FastifyPluginAsync } from 'fastify';
import type { WebSocket } from 'ws';
import { VmboxError } from '../../errors.js';
import type { GuestProcess } from '../../guest/client.js';
import type { SandboxManager } from '../../runtime/manager.js';
import { type ExecClientMessage, type ExecServerMessage, ExecStart, SandboxRef, StreamTag } from '../../spec/api.js';

/**
 * A command as a WebSocket: the first text message starts it (ExecStart);
 * binary frames carry a stream tag byte then raw bytes (stdin from the client,
 * stdout/stderr from the server); text messages carry control (eof, signal,
 * started, exit, error). Closing the socket abandons the command, which the
 * agent then kills.
 */
export const execRoutes =
  (m: SandboxManager): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Params: { ref: string } }>(
      '/v1/sandboxes/:ref/exec',
      { websocket: true, schema: { params: SandboxRef, tags: ['sandboxes'] } },
      (socket, req) => {
        const ref = req.params.ref;
        let proc: GuestProcess | undefined;
        let finished = false;
        let removeWhenDone = false;
        const send = (msg: ExecServerMessage) => {
          if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg));
        };
        const end = () => {
          if (finished) return;
          finished = true;
          if (removeWhenDone) m.remove(ref, { force: true }).catch(() => {});
        };
        socket.on('close', () => {
          if (!finished) proc?.abort(new VmboxError('aborted', 'the client went away'));
          end();
        });
        socket.on('message', (data: Buffer, isBinary: boolean) => {
          try {
            if (!proc) {
              const start = parseStart(data, isBinary);
              removeWhenDone = start.removeWhenDone ?? false;
              proc = m.exec(ref, start.argv, {
                env: start.env,
                cwd: start.cwd,
                user: start.user,
                stdin: start.stdin,
                timeoutMs: start.timeoutMs,
                onStdout: (d) => sendTagged(socket, StreamTag.stdout, d),
                onStderr: (d) => sendTagged(socket, StreamTag.stderr, d),
              });
              proc.pid.then((pid) => send({ type: 'started', pid })).catch(() => {});
              proc.exit.then(
                (exit) => {
                  send({ type: 'exit', ...exit });
                  end();
                  socket.close(1000);
                },
                (err: Error) => fail(socket, err, end),
              );
              return;
            }
            if (isBinary) {
              if (data[0] !== StreamTag.stdin)
                throw new VmboxError('invalidArgument', 'binary frames from the client must carry stdin (tag 0)');
              proc.write(data.subarray(1)).catch(() => {});
              return;
            }
            const msg = JSON.parse(data.toString()) as ExecClientMessage;
            if (msg.type === 'eof') proc.closeStdin();
            else if (msg.type === 'signal') proc.kill(msg.signal);
            else throw new VmboxError('invalidArgument', 'expected a message of type eof or signal');
          } catch (err) {
            fail(socket, err as Error, end);
          }
        });
      },
    );
  };

function parseStart(data: Buffer, isBinary: boolean): ExecStart {
  let start: unknown;
  try {
    if (isBinary) throw new Error();
    start = JSON.parse(data.toString());
  } catch {
    throw new VmboxError('invalidArgument', 'the first message must be a JSON object: {"argv": [...]}');
  }
  const first = Value.Errors(ExecStart, start).First();
  if (first) throw new VmboxError('invalidArgument', `exec${first.path.replace(/\//g, '.')}: ${first.message}`);
  return start as ExecStart;
}

/** Sends one tagged chunk; the promise holds the guest back until the socket took it. */
function sendTagged(socket: WebSocket, tag: number, data: Buffer): Promise<void> | undefined {
  if (socket.readyState !== socket.OPEN) return undefined;
  const frame = Buffer.allocUnsafe(data.length + 1);
  frame[0] = tag;
  data.copy(frame, 1);
  return new Promise((resolve) => socket.send(frame, () => resolve()));
}

function fail(socket: WebSocket, err: Error, end: () => void): void {
  const code = err instanceof VmboxError ? err.code : 'internal';
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ type: 'error', code, message: err.message }));
  end();
  socket.close(1011);
}
