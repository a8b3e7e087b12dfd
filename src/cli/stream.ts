import { VmboxError } from '../errors.js';
import type { Commands, ExecOptions } from '../sdk/commands.js';
import type { ProcessSocket } from '../sdk/process-socket.js';
import { mark } from '../util/trace.js';

export interface StreamFlags {
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  interactive?: boolean;
  /** Seconds. */
  timeout?: number;
}

/** Starts the process to stream: a command in a sandbox, or a run's own sandbox. */
export type StartProcess = (opts: ExecOptions) => ProcessSocket | Promise<ProcessSocket>;

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
export const exitForSignal = (sig: NodeJS.Signals) => 128 + (signalNumbers[sig] ?? 2);

/**
 * Runs a command with the terminal attached: its output to ours (with
 * backpressure), our stdin to it with -i. Returns the exit code to use:
 * the command's, 124 on timeout, 128+N when we are interrupted (which
 * abandons the command, and the guest kills it).
 */
export function streamCommand(commands: Commands, argv: string[], f: StreamFlags): Promise<number> {
  return streamProcess((o) => commands.exec(argv, o), f);
}

/** As streamCommand, for any way of starting the process. */
export function streamProcess(start: StartProcess, f: StreamFlags): Promise<number> {
  return interruptible((signal, interrupted) => attach(start, f, signal, interrupted));
}

/** Bad --timeout values fail before anything boots. */
export function checkTimeout(seconds: number | undefined): void {
  if (seconds !== undefined && !(seconds > 0)) throw new VmboxError('invalidArgument', '--timeout must be a positive number of seconds');
}

/**
 * Runs `fn` with Ctrl-C, TERM and HUP turned into an abort of its signal
 * (instead of killing this process), and tells it which signal came.
 */
export async function interruptible<T>(fn: (signal: AbortSignal, interrupted: () => NodeJS.Signals | undefined) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted ??= sig;
    abort.abort();
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
  try {
    return await fn(abort.signal, () => interrupted);
  } finally {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal);
  }
}

async function attach(
  start: StartProcess,
  f: StreamFlags,
  signal: AbortSignal,
  interrupted: () => NodeJS.Signals | undefined,
): Promise<number> {
  try {
    const h = await start({
      env: f.env,
      cwd: f.workdir,
      user: f.user,
      stdin: f.interactive ?? false,
      timeoutMs: f.timeout ? Math.round(f.timeout * 1000) : undefined,
      signal,
      onStdout: (d) => writeWithBackpressure(process.stdout, d),
      onStderr: (d) => writeWithBackpressure(process.stderr, d),
    });
    if (f.interactive) {
      (async () => {
        for await (const chunk of process.stdin) await h.write(chunk as Buffer);
        h.closeStdin();
      })().catch(() => {});
    }
    const exit = await h.exit.catch((err) => {
      if (interrupted()) return undefined;
      throw err;
    });
    mark('command done');
    if (!exit) return exitForSignal(interrupted() ?? 'SIGINT');
    if (exit.timedOut) {
      process.stderr.write(`vmbox: command timed out after ${f.timeout} s and was killed\n`);
      return 124;
    }
    if (exit.oomKilled) {
      process.stderr.write('vmbox: the command was killed for lack of memory (the guest ran out): give the sandbox more with --memory\n');
    }
    return exit.exitCode;
  } finally {
    if (f.interactive) process.stdin.destroy();
  }
}

function writeWithBackpressure(stream: NodeJS.WriteStream, data: Buffer): Promise<void> | undefined {
  if (stream.write(data)) return undefined;
  return new Promise((resolve) => stream.once('drain', () => resolve()));
}
