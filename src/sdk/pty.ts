import { CommandHandle } from './commands.js';
import type { CallOptions, Connection } from './connection.js';
import { sandboxPath } from './paths.js';
import { ProcessSocket, type ProcessStreams } from './process-socket.js';

/** A login shell: bash if the image has it, else sh. */
export const LOGIN_SHELL = ['/bin/sh', '-c', 'if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l'];

export interface PtyCreateOptions extends CallOptions {
  cols: number;
  rows: number;
  /** Called with the terminal's output, as raw bytes. It may return anything; a returned promise holds the output back until it settles. */
  onData?: (data: Uint8Array) => unknown;
  /** The program to run (default: bash as a login shell if the image has it, else sh). */
  cmd?: string[];
  envs?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** Kill the terminal's processes when this client disconnects (default false: they keep running, reconnect with `connect`). */
  killOnDisconnect?: boolean;
}

/** `sandbox.pty`: interactive terminals in the guest. */
export class Pty {
  private readonly open = new Map<number, CommandHandle>();

  constructor(
    private readonly conn: Connection,
    private readonly ref: string,
    private readonly kill_: (pid: number) => Promise<boolean>,
  ) {}

  /** Starts a terminal; resolves with its handle once it runs (`pid`, `sendInput`, `resize`, `wait`, `kill`). */
  async create(opts: PtyCreateOptions): Promise<CommandHandle> {
    const path = sandboxPath(this.ref, '/exec');
    const start = {
      argv: opts.cmd ?? LOGIN_SHELL,
      env: opts.envs,
      cwd: opts.cwd,
      user: opts.user,
      pty: { cols: opts.cols, rows: opts.rows },
      background: !opts.killOnDisconnect,
    };
    return this.handle((streams) => new ProcessSocket(this.conn, path, start, streams, opts.signal), opts.onData);
  }

  /** Reattaches to a terminal by pid (its output while detached comes first). */
  async connect(pid: number, opts: { onData?: (data: Uint8Array) => unknown; signal?: AbortSignal } = {}): Promise<CommandHandle> {
    const path = sandboxPath(this.ref, `/processes/${pid}/attach`);
    return this.handle((streams) => new ProcessSocket(this.conn, path, undefined, streams, opts.signal), opts.onData);
  }

  /** Input to a terminal this client has open. */
  async sendInput(pid: number, data: string | Uint8Array): Promise<void> {
    await (await this.get(pid)).sendInput(data);
  }

  async resize(pid: number, size: { cols: number; rows: number }): Promise<void> {
    await (await this.get(pid)).resize(size);
  }

  /** Kills the terminal's process group. */
  kill(pid: number): Promise<boolean> {
    return this.kill_(pid);
  }

  private async get(pid: number): Promise<CommandHandle> {
    return this.open.get(pid) ?? this.connect(pid);
  }

  private async handle(make: (streams: ProcessStreams) => ProcessSocket, onData?: (data: Uint8Array) => unknown): Promise<CommandHandle> {
    // Terminal output is bytes (an escape sequence may split a UTF-8 character): hand them over as such.
    const h = await CommandHandle.open(make, {}, this.kill_, onData);
    this.open.set(h.pid, h);
    h.wait({ throwOnError: false })
      .finally(() => this.open.delete(h.pid))
      .catch(() => {});
    return h;
  }
}
