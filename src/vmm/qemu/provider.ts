import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { VmboxError } from '../../errors.js';
import { deferred } from '../../util/deferred.js';
import type { StopOptions, VmExit, VmHandle, VmMetrics, VmmProvider, VmSpec } from '../provider.js';
import { buildQemuArgs, qemuPaths } from './args.js';
import { QmpClient } from './qmp.js';

export const qemuBinary = () => process.env.VMBOX_QEMU || 'qemu-system-x86_64';

export class QemuProvider implements VmmProvider {
  readonly name = 'qemu';

  async start(spec: VmSpec): Promise<QemuVm> {
    const paths = qemuPaths(spec.runDir);
    mkdirSync(spec.runDir, { recursive: true });
    rmSync(paths.agentSocket, { force: true });
    // We listen, QEMU connects: the socket exists before QEMU needs it.
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(paths.agentSocket, resolve);
    });
    const agent = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const qemu = findExecutable(qemuBinary());
    if (!qemu) {
      server.close();
      throw new VmboxError('qemuMissing', `${qemuBinary()} is not installed: run ./vmbox once as root, or apt-get install qemu-system-x86`);
    }
    // setpriv sets the parent-death signal and execs QEMU, so a killed owner
    // cannot leave a VM running that nothing will ever stop.
    const [cmd, args] = spec.dieWithParent
      ? ['setpriv', ['--pdeathsig', 'SIGKILL', '--', qemu, ...buildQemuArgs(spec)]]
      : [qemu, buildQemuArgs(spec)];
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const vm = new QemuVm(spec, child, server, agent);
    await vm.started;
    return vm;
  }
}

export class QemuVm implements VmHandle {
  readonly agentSocketPath: string;
  readonly consoleLogPath: string;
  private readonly exit = deferred<VmExit>();
  readonly exited = this.exit.promise;
  private code: number | null = null;
  private running = true;
  private stderr = '';
  /** Resolves once QEMU is up (has connected the agent socket); rejects if it fails to start. */
  readonly started: Promise<void>;

  constructor(
    readonly spec: VmSpec,
    private readonly child: ChildProcess,
    server: net.Server,
    private readonly agentConn: Promise<net.Socket>,
  ) {
    const paths = qemuPaths(spec.runDir);
    this.agentSocketPath = paths.agentSocket;
    this.consoleLogPath = paths.consoleLog;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      if (this.stderr.length < 16384) this.stderr += s;
    });
    const spawnError = deferred<never>();
    child.once('error', (err: NodeJS.ErrnoException) => {
      this.running = false;
      spawnError.reject(
        err.code === 'ENOENT'
          ? new VmboxError('qemuMissing', `${qemuBinary()} is not installed: run ./vmbox once as root, or apt-get install qemu-system-x86`)
          : new VmboxError('bootFailed', `cannot start QEMU: ${err.message}`),
      );
      this.exit.resolve({ code: null, signal: null });
    });
    child.once('exit', (code, signal) => {
      this.running = false;
      this.qmpClient?.then(
        (q) => q.close(),
        () => {},
      );
      this.code = code;
      server.close();
      this.exit.resolve({ code, signal });
    });
    this.started = Promise.race([
      agentConn.then(() => undefined),
      spawnError.promise,
      this.exited.then(() => {
        throw new VmboxError('bootFailed', `QEMU exited before the VM started: ${this.stderr.trim() || 'no message'}`);
      }),
    ]);
    this.started.catch(() => server.close());
  }

  get id(): string {
    return this.spec.id;
  }
  get pid(): number {
    return this.child.pid ?? -1;
  }
  get exitCode(): number | null {
    return this.code;
  }
  isRunning(): boolean {
    return this.running;
  }

  private qmpClient?: Promise<QmpClient>;

  /** A QMP connection to this VM's QEMU, opened on first use. */
  qmp(): Promise<QmpClient> {
    this.qmpClient ??= QmpClient.connect(qemuPaths(this.spec.runDir).qmpSocket);
    return this.qmpClient;
  }

  /** The byte stream of the guest agent's virtio-serial port. */
  async connectAgent(): Promise<Duplex> {
    return this.agentConn;
  }

  async stop(opts: StopOptions = {}): Promise<VmExit> {
    if (!this.running) return this.exited;
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    const exitedBy = (ms: number) =>
      Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(0, ms)).unref())]);
    if (opts.graceful) {
      // The agent may be gone or hung: give it half the time, then the signals below stop QEMU.
      const asked = await Promise.race([
        opts.graceful().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(0, (deadline - Date.now()) / 2)).unref()),
      ]);
      if (asked && (await exitedBy((deadline - Date.now()) / 2))) return this.exited;
    }
    if (this.running) this.child.kill('SIGTERM');
    if (await exitedBy(deadline - Date.now())) return this.exited;
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }

  async metrics(): Promise<VmMetrics> {
    return processMetrics(this.pid);
  }

  consoleTail(lines = 20): string {
    return tailLines(this.consoleLogPath, lines);
  }

  /** QEMU's own error output, for diagnostics. */
  get qemuStderr(): string {
    return this.stderr;
  }
}

/** The absolute path of an executable, searched on PATH like a shell, or undefined. */
export function findExecutable(name: string): string | undefined {
  const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(':').map((d) => join(d || '.', name));
  return candidates.find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

/** CPU and RSS of a process from /proc. */
export function processMetrics(pid: number): VmMetrics {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuMs: (ticks * 1000) / 100, rssBytes: rssKb * 1024 };
}

/** The last `lines` non-empty lines of a text file, reading at most 16 KiB. */
export function tailLines(path: string, lines: number): string {
  try {
    const size = statSync(path).size;
    const len = Math.min(size, 16384);
    const buf = Buffer.alloc(len);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, len, size - len);
    } finally {
      closeSync(fd);
    }
    return buf
      .toString('utf8')
      .replace(/\r/g, '')
      .split('\n')
      .filter((l) => l.trim())
      .slice(-lines)
      .join('\n');
  } catch {
    return '';
  }
}
