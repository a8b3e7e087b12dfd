import { VmboxError } from '../../errors.js';
import type { SandboxManager } from '../../runtime/manager.js';
import type { ExecStreams, GuestProcess } from '../../runtime/processes.js';
import type { ExecExit } from '../../spec/processes.js';
import { EventQueue } from '../../util/event-queue.js';
import type { EnvdCaller } from './caller.js';

/** What a process stream carries, before it becomes E2B's ProcessEvent. */
export type ProcessOutput =
  | { kind: 'data'; stream: 'stdout' | 'stderr' | 'pty'; data: Buffer }
  | { kind: 'end'; exit: ExecExit }
  | { kind: 'keepalive' };

export interface ProcessConfig {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

/** A process E2B's API holds: its agent handle, and the streams following it now. */
export interface EnvdProcess {
  readonly sandboxId: string;
  pid: number;
  readonly tag?: string;
  readonly config: ProcessConfig;
  readonly pty: boolean;
  readonly handle: GuestProcess;
  readonly followers: Set<EventQueue<ProcessOutput>>;
}

export interface StartOptions {
  config: ProcessConfig;
  user: string;
  pty?: { cols: number; rows: number };
  tag?: string;
  stdin: boolean;
  /** E2B's `Connect-Timeout-Ms`: the process is killed when it runs out, whoever follows it. */
  timeoutMs?: number;
}

export type Selector = { pid: number } | { tag: string };

/**
 * The processes E2B's envd API started or took over, per sandbox. E2B's
 * processes outlive the stream that started them (a client that goes away
 * leaves them running) and take input, signals and resizes by pid from other
 * requests, so the server keeps each one's agent handle until it ends and
 * fans its output out to whoever follows it then. A process this server does
 * not hold (it was restarted) is taken over from the agent by pid.
 */
export class EnvdProcesses {
  private readonly bySandbox = new Map<string, Map<number, EnvdProcess>>();
  private readonly takingOver = new Map<string, Promise<EnvdProcess>>();

  constructor(private readonly m: SandboxManager) {}

  /** Starts a process; `first` follows it from its first byte. */
  start(caller: EnvdCaller, o: StartOptions): { proc: EnvdProcess; first: EventQueue<ProcessOutput> } {
    const first = new EventQueue<ProcessOutput>();
    const followers = new Set([first]);
    const pty = o.pty !== undefined;
    const handle = this.m.processes.exec(
      caller.sandboxId,
      [o.config.cmd, ...o.config.args],
      {
        env: o.config.envs,
        cwd: o.config.cwd,
        user: caller.user,
        stdin: o.stdin,
        pty: o.pty,
        timeoutMs: o.timeoutMs,
        // E2B's processes outlive their stream; the agent keeps them if this server goes.
        background: true,
      },
      fanOut(followers, pty),
    );
    const proc: EnvdProcess = { sandboxId: caller.sandboxId, pid: 0, tag: o.tag, config: o.config, pty, handle, followers };
    this.track(proc);
    return { proc, first };
  }

  /** The process a selector names: held here, or (by pid) taken over from the agent. */
  async find(sandboxId: string, sel: Selector): Promise<EnvdProcess> {
    const held = this.bySandbox.get(sandboxId) ?? new Map<number, EnvdProcess>();
    if ('tag' in sel) {
      const byTag = [...held.values()].find((p) => p.tag === sel.tag);
      if (!byTag) throw new VmboxError('notFound', `no running process tagged '${sel.tag}'`);
      return byTag;
    }
    const known = held.get(sel.pid);
    if (known) return known;
    // One take-over per process: concurrent calls share it (the agent gives a process to one client).
    const key = `${sandboxId}/${sel.pid}`;
    const taking = this.takingOver.get(key) ?? this.takeOver(sandboxId, sel.pid);
    this.takingOver.set(key, taking);
    try {
      return await taking;
    } finally {
      this.takingOver.delete(key);
    }
  }

  private async takeOver(sandboxId: string, pid: number): Promise<EnvdProcess> {
    const listed = (await this.m.processes.list(sandboxId)).find((p) => p.pid === pid && !p.exited);
    if (!listed) throw new VmboxError('notFound', `process with pid ${pid} not found`);
    const followers = new Set<EventQueue<ProcessOutput>>();
    const handle = this.m.processes.attach(sandboxId, pid, { ...fanOut(followers, listed.pty), pty: listed.pty });
    const [cmd = '', ...args] = listed.argv;
    const proc: EnvdProcess = {
      sandboxId,
      pid,
      config: { cmd, args, envs: {}, cwd: listed.cwd },
      pty: listed.pty,
      handle,
      followers,
    };
    this.track(proc);
    this.held(sandboxId).set(pid, proc); // held from now: the next call finds it, not another take-over
    return proc;
  }

  /** A new stream following `proc` from now on; it ends when the process does. */
  follow(proc: EnvdProcess): EventQueue<ProcessOutput> {
    const q = new EventQueue<ProcessOutput>();
    proc.followers.add(q);
    return q;
  }

  /** Running processes: those held here with their tags and configs, and any other the agent runs. */
  async list(sandboxId: string): Promise<Array<{ pid: number; tag?: string; config: ProcessConfig }>> {
    const held = this.bySandbox.get(sandboxId) ?? new Map<number, EnvdProcess>();
    const running = (await this.m.processes.list(sandboxId)).filter((p) => !p.exited);
    return running.map((p) => {
      const mine = held.get(p.pid);
      if (mine) return { pid: p.pid, tag: mine.tag, config: mine.config };
      const [cmd = '', ...args] = p.argv;
      return { pid: p.pid, config: { cmd, args, envs: {}, cwd: p.cwd } };
    });
  }

  /** A signal to a process group by its leader's pid: any process vmbox started, held here or not. */
  async signal(sandboxId: string, pid: number, signal: number): Promise<void> {
    await this.m.processes.signal(sandboxId, pid, signal);
  }

  private held(sandboxId: string): Map<number, EnvdProcess> {
    let held = this.bySandbox.get(sandboxId);
    if (!held) {
      held = new Map();
      this.bySandbox.set(sandboxId, held);
    }
    return held;
  }

  /** Held from its pid until it ends (or its sandbox does): then its followers get the end. */
  private track(proc: EnvdProcess): void {
    const forget = () => {
      const held = this.bySandbox.get(proc.sandboxId);
      if (held?.get(proc.pid) === proc) held.delete(proc.pid);
      if (held?.size === 0) this.bySandbox.delete(proc.sandboxId);
    };
    proc.handle.pid.then(
      (pid) => {
        proc.pid = pid;
        this.held(proc.sandboxId).set(pid, proc);
      },
      () => {},
    );
    proc.handle.exit.then(
      (exit) => {
        forget();
        for (const q of proc.followers) {
          q.push({ kind: 'end', exit });
          q.end();
        }
      },
      (err) => {
        forget();
        for (const q of proc.followers) q.fail(err);
      },
    );
  }
}

/** Output to every follower; the guest waits while any of them is behind. */
function fanOut(followers: Set<EventQueue<ProcessOutput>>, pty: boolean): ExecStreams {
  const send = (stream: 'stdout' | 'stderr' | 'pty', data: Buffer) => {
    if (followers.size === 0) return; // nobody follows: E2B drops it, the process runs on
    return Promise.all([...followers].map((q) => q.push({ kind: 'data', stream, data }))).then(() => {});
  };
  return {
    onStdout: (d) => send(pty ? 'pty' : 'stdout', d),
    onStderr: (d) => send('stderr', d),
  };
}
