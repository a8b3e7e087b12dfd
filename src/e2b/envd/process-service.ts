import { constants } from 'node:os';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { ExecExit } from '../../spec/processes.js';
import type { EventQueue } from '../../util/event-queue.js';
import type { Process, ProcessEventSchema, ProcessSelector } from '../gen/process/process_pb.js';
import type { EnvdAdmission } from './caller.js';
import { dropIfSandboxEnded, toConnectError } from './errors.js';
import { resolvePath } from './guest-users.js';
import { keepalive } from './keepalive.js';
import type { EnvdProcess, EnvdProcesses, ProcessOutput, Selector } from './processes.js';

type EventInit = MessageInitShape<typeof ProcessEventSchema>;

/**
 * E2B's `process.Process` service on vmbox's runtime: every process starts
 * through `manager.processes` as vmbox's own API starts them, as the caller's
 * guest user, in the user's home unless told otherwise. Streams begin with
 * `start {pid}` and end with `end {exitCode}`; `Connect-Timeout-Ms` kills the
 * process when it runs out (DeadlineExceeded), a client that goes away does not.
 */
export function processService(admission: EnvdAdmission, procs: EnvdProcesses): ServiceImpl<typeof Process> {
  const caller = (ctx: HandlerContext) => admission.caller(ctx.requestHeader, ctx.requestHeader.get('host') ?? undefined);
  const find = async (ctx: HandlerContext, sel: ProcessSelector | undefined) => {
    const c = await caller(ctx);
    return procs.find(c.sandboxId, selector(sel));
  };
  const guarded =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      try {
        return await fn(...a);
      } catch (err) {
        throw toConnectError(err);
      }
    };

  return {
    list: guarded(async (_req, ctx) => {
      const c = await caller(ctx);
      return { processes: await procs.list(c.sandboxId) };
    }),

    async *start(req, ctx) {
      let proc: EnvdProcess;
      let first: EventQueue<ProcessOutput>;
      try {
        const c = await caller(ctx);
        const p = req.process;
        if (!p?.cmd) throw new ConnectError('process.cmd is required', Code.InvalidArgument);
        ({ proc, first } = procs.start(c, {
          config: { cmd: p.cmd, args: p.args, envs: p.envs, cwd: resolvePath(p.cwd ?? '', c.home) },
          user: c.user,
          pty: req.pty?.size ? { cols: req.pty.size.cols, rows: req.pty.size.rows } : undefined,
          tag: req.tag,
          // E2B's default: a stdin pipe unless asked otherwise (its newer SDKs ask).
          stdin: req.stdin ?? true,
          timeoutMs: ctx.timeoutMs(),
        }));
        await proc.handle.pid;
      } catch (err) {
        throw toConnectError(err);
      }
      yield* stream(proc, first, ctx);
    },

    async *connect(req, ctx) {
      let proc: EnvdProcess;
      try {
        proc = await find(ctx, req.process);
      } catch (err) {
        throw toConnectError(err);
      }
      yield* stream(proc, procs.follow(proc), ctx);
    },

    update: guarded(async (req, ctx) => {
      const proc = await find(ctx, req.process);
      const size = req.pty?.size;
      if (size) {
        if (!proc.pty) throw new ConnectError(`process ${proc.pid} has no terminal to resize`, Code.FailedPrecondition);
        proc.handle.resize(size.cols, size.rows);
      }
      return {};
    }),

    sendInput: guarded(async (req, ctx) => {
      const proc = await find(ctx, req.process);
      const input = req.input?.input;
      if (input?.case && input.value.length) await proc.handle.write(input.value);
      return {};
    }),

    streamInput: guarded(async (reqs, ctx) => {
      let proc: EnvdProcess | undefined;
      for await (const r of reqs) {
        if (r.event.case === 'start') proc = await find(ctx, r.event.value.process);
        else if (r.event.case === 'data') {
          if (!proc) throw new ConnectError('the first message must be start, naming the process', Code.InvalidArgument);
          const input = r.event.value.input?.input;
          if (input?.case && input.value.length) await proc.handle.write(input.value);
        }
      }
      return {};
    }),

    sendSignal: guarded(async (req, ctx) => {
      const c = await caller(ctx);
      const sel = selector(req.process);
      const pid = 'pid' in sel ? sel.pid : (await procs.find(c.sandboxId, sel)).pid;
      if (req.signal !== 9 && req.signal !== 15) throw new ConnectError('signal must be SIGKILL or SIGTERM', Code.InvalidArgument);
      await procs.signal(c.sandboxId, pid, req.signal);
      return {};
    }),

    closeStdin: guarded(async (req, ctx) => {
      const proc = await find(ctx, req.process);
      if (proc.pty) throw new ConnectError('a terminal has no stdin to close: send Ctrl+D (0x04) instead', Code.FailedPrecondition);
      proc.handle.closeStdin();
      return {};
    }),
  };
}

function selector(sel: ProcessSelector | undefined): Selector {
  const s = sel?.selector;
  if (s?.case === 'pid') return { pid: s.value };
  if (s?.case === 'tag') return { tag: s.value };
  throw new ConnectError('process: give a pid or a tag', Code.InvalidArgument);
}

/** `start`, then the output, keepalives and `end` as they come; the stream leaves the process running. */
async function* stream(proc: EnvdProcess, q: EventQueue<ProcessOutput>, ctx: HandlerContext): AsyncGenerator<{ event: EventInit }> {
  const stop = keepalive(q, ctx.requestHeader, { kind: 'keepalive' });
  // A client that goes away stops following at once, output or not (the process runs on).
  const gone = () => q.close();
  ctx.signal.addEventListener('abort', gone, { once: true });
  try {
    yield { event: { event: { case: 'start', value: { pid: proc.pid } } } };
    for await (const o of q) {
      if (o.kind === 'keepalive') yield { event: { event: { case: 'keepalive', value: {} } } };
      else if (o.kind === 'data') yield { event: { event: { case: 'data', value: { output: { case: o.stream, value: o.data } } } } };
      else {
        if (o.exit.timedOut) throw new ConnectError('the command ran past its timeout and was killed', Code.DeadlineExceeded);
        yield { event: { event: { case: 'end', value: endOf(o.exit) } } };
        return;
      }
    }
    // Cut short: the deadline (Connect-Timeout-Ms) passed, or the client went away.
    throw ConnectError.from(ctx.signal.reason ?? new ConnectError('the process stream ended', Code.Aborted));
  } catch (err) {
    dropIfSandboxEnded(err, ctx);
    throw toConnectError(err);
  } finally {
    ctx.signal.removeEventListener('abort', gone);
    stop();
    proc.followers.delete(q);
    // Whatever this stream left unread must not hold the process back for other followers.
    q.close();
  }
}

/** As Go's os.ProcessState says it (E2B's envd is Go): `exit status N`, or `signal: killed` and exit code -1. */
function endOf(exit: ExecExit) {
  if (exit.signal === undefined) return { exitCode: exit.exitCode, exited: true, status: `exit status ${exit.exitCode}` };
  const name = signalNames[exit.signal] ?? `signal ${exit.signal}`;
  return { exitCode: -1, exited: false, status: `signal: ${name}`, ...(exit.oomKilled ? { error: 'killed for lack of memory' } : {}) };
}

const signalNames: Record<number, string> = {
  [constants.signals.SIGKILL]: 'killed',
  [constants.signals.SIGTERM]: 'terminated',
  [constants.signals.SIGINT]: 'interrupt',
  [constants.signals.SIGHUP]: 'hangup',
  [constants.signals.SIGPIPE]: 'broken pipe',
  [constants.signals.SIGSEGV]: 'segmentation fault',
  [constants.signals.SIGABRT]: 'aborted',
};
