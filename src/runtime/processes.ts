import { VmboxError } from '../errors.js';
import type { ExecStreams, GuestProcess } from '../guest/client.js';
import type { ExecStart } from '../spec/api.js';
import { capabilityMask } from '../spec/capabilities.js';
import type { ProcessInfo } from '../spec/processes.js';
import type { LiveSandbox } from './live.js';
import type { SandboxManager } from './manager.js';
import type { SandboxRecord } from './state.js';

/** A process as routes see it (the agent's own handle). */
export type { ExecStreams, GuestProcess };

/** What starts a command: the API's request without the program (which is `argv`). */
export type ExecOptions = Omit<ExecStart, 'argv'>;

/**
 * Commands and terminals in running sandboxes. Each process streamed to a
 * client counts as activity (the idle policy waits for it) and its output
 * goes to the sandbox's log.
 */
export class SandboxProcesses {
  constructor(private readonly m: SandboxManager) {}

  /** Starts `argv` (or a named script) with the image's config, the spec's and the call's settings layered in that order. */
  exec(ref: string, argvGiven: string[] | undefined, opts: ExecOptions, streams: ExecStreams = {}): GuestProcess {
    const argv = opts.script ? this.script(ref, opts.script, argvGiven) : (argvGiven ?? []);
    if (argv.length === 0) throw new VmboxError('invalidArgument', 'empty command: give the program to run and its arguments');
    const pty = opts.pty !== undefined;
    return this.tracked(ref, `command ${argv.join(' ').slice(0, 200)}`, pty, streams, (rec, live, s) =>
      live.machine.agent.exec(
        {
          argv,
          env: environment(rec, opts.env),
          rlimits: Object.entries(rec.spec.rlimits ?? {}).map(([name, l]) => `${name}=${l?.soft}:${l?.hard}`),
          restricted: rec.spec.securityProfile === 'restricted',
          caps: capabilityMask(rec.spec),
          cwd: opts.cwd ?? rec.spec.workdir ?? rec.image.config.workingDir,
          user: opts.user ?? rec.spec.user ?? rec.image.config.user,
          stdin: opts.stdin || pty,
          timeoutMs: opts.timeoutMs,
          pty: opts.pty,
          // Terminals outlive their client unless asked otherwise; commands do only when asked.
          detached: opts.background ?? pty,
        },
        s,
      ),
    );
  }

  /** A named script as argv: the sandbox's shell running it (its arguments after, as $1…). */
  private script(ref: string, name: string, args: string[] | undefined): string[] {
    const spec = this.m.find(ref).spec;
    const body = spec.scripts?.[name];
    if (body === undefined) {
      const known = Object.keys(spec.scripts ?? {});
      throw new VmboxError('notFound', `sandbox ${spec.name} has no script ${name}${known.length ? ` (it has ${known.join(', ')})` : ''}`);
    }
    return [spec.shell ?? '/bin/sh', '-c', body, name, ...(args ?? [])];
  }

  /** Takes over a process started earlier (a background command, a terminal) by its pid. */
  attach(ref: string, pid: number, streams: ExecStreams & { pty?: boolean } = {}): GuestProcess {
    return this.tracked(ref, `process ${pid}`, streams.pty ?? false, streams, (_rec, live, s) => live.machine.agent.attach(pid, s));
  }

  /** Processes started through vmbox, running or waiting to be attached. */
  list(ref: string): Promise<ProcessInfo[]> {
    return this.m.running(ref).live.machine.agent.processes();
  }

  signal(ref: string, pid: number, signal: number): Promise<{ exited: boolean }> {
    return this.m.running(ref).live.machine.agent.killProcess(pid, signal);
  }

  private tracked(
    ref: string,
    what: string,
    pty: boolean,
    streams: ExecStreams,
    start: (rec: SandboxRecord, live: LiveSandbox, streams: ExecStreams) => GuestProcess,
  ): GuestProcess {
    const { rec, live } = this.m.running(ref);
    const log = this.m.log(rec.id);
    const proc = start(rec, live, {
      onStdout: (d) => {
        log.append(pty ? 'output' : 'stdout', d);
        return streams.onStdout?.(d);
      },
      onStderr: (d) => {
        log.append('stderr', d);
        return streams.onStderr?.(d);
      },
    });
    live.activeExecs++; // once started: a start that throws leaves no count behind
    const done = () => {
      live.activeExecs--;
      live.touch();
    };
    proc.exit.then((exit) => {
      done();
      if (exit.oomKilled) this.m.system(rec.id, `${what} was killed for lack of memory (the guest's OOM killer), exit ${exit.exitCode}`);
    }, done);
    // Cut off because the runtime stopped the sandbox on purpose: say so and why, not that the VM died.
    const exit = proc.exit.catch((err: unknown) => {
      if (live.stopReason === undefined || !(err instanceof VmboxError) || (err.code !== 'vmDied' && err.code !== 'channelClosed'))
        throw err;
      throw new VmboxError(
        'sandboxStopped',
        `sandbox ${rec.name} was stopped while the command ran (${live.stopReason}): start it again to run commands`,
      );
    });
    exit.catch(() => {});
    return { ...proc, exit };
  }
}

/** KEY=VALUE strings: the image's environment, then the sandbox's, then the call's. */
function environment(rec: SandboxRecord, extra: Record<string, string> = {}): string[] {
  const env = new Map<string, string>();
  for (const kv of rec.image.config.env) {
    const i = kv.indexOf('=');
    env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  for (const [k, v] of Object.entries({ ...rec.spec.env, ...extra })) env.set(k, v);
  return [...env].map(([k, v]) => `${k}=${v}`);
}
