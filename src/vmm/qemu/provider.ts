import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmboxError } from '../../errors.js';
import { deferred } from '../../util/deferred.js';
import { isAlive } from '../../util/process.js';
import { tailLines } from '../../util/tail.js';
import type { StopOptions, VmExit, VmHandle, VmLocator, VmMetrics, VmmProvider, VmSpec } from '../provider.js';
import { buildQemuArgs, type QemuPaths, qemuPaths } from './args.js';
import { joinCgroups, releaseCgroups } from './cgroups.js';
import { allocateUid, jailHost, planJail, prepareJail, releaseUid, SECCOMP_ARGS, seccompSupported } from './jail.js';
import { restoreState, saveLive, saveState } from './migrate.js';
import { QmpClient } from './qmp.js';

export const qemuBinary = () => process.env.VMBOX_QEMU || 'qemu-system-x86_64';

const missing = () =>
  new VmboxError('qemuMissing', `${qemuBinary()} is not installed: run ./vmbox once as root, or apt-get install qemu-system-x86`);

export class QemuProvider implements VmmProvider {
  readonly name = 'qemu';

  /**
   * Spawns QEMU detached (its own session, output to files), so it survives
   * the process that started it and a later one adopts it.
   */
  async start(spec: VmSpec): Promise<QemuVm> {
    const paths = qemuPaths(spec.runDir);
    mkdirSync(spec.runDir, { recursive: true });
    // The console log too: a jailed QEMU (another uid) could not truncate one an earlier boot left.
    for (const s of [paths.agentSocket, paths.qmpSocket, paths.migrateSocket, paths.consoleLog]) rmSync(s, { force: true });
    const qemu = findExecutable(qemuBinary());
    if (!qemu) throw missing();
    const args = [...buildQemuArgs(spec), ...(seccompSupported(qemu) ? SECCOMP_ARGS : [])];
    let uid: number | undefined;
    let command = qemu;
    let cgroupProcs: string[] = [];
    if (spec.jailLauncher && jailHost().enabled.on) {
      uid = allocateUid(spec.id);
      try {
        const jail = prepareJail(planJail(spec, uid, qemu), spec.id, spec.runDir);
        args.unshift(...jail.opts, '--', qemu);
        cgroupProcs = jail.cgroupProcs;
      } catch (err) {
        releaseUid(uid);
        releaseCgroups(spec.id);
        throw new VmboxError('bootFailed', `cannot prepare the jail of QEMU: ${(err as Error).message}`);
      }
      command = spec.jailLauncher;
    }
    const log = openSync(paths.qemuLog, 'w');
    let vm: QemuVm;
    try {
      const child = spawn(command, args, { stdio: ['ignore', log, log], detached: true });
      child.unref();
      vm = new QemuVm(spec.id, spec.runDir, child.pid ?? -1, child);
      if (child.pid) joinCgroups(child.pid, cgroupProcs, paths.qemuLog);
    } finally {
      closeSync(log);
    }
    if (uid !== undefined) {
      const held = uid;
      vm.exited.then(() => {
        releaseUid(held);
        releaseCgroups(spec.id);
      });
    }
    await vm.started;
    if (spec.restoreFrom) {
      try {
        // A private memory file is a template's or a materialized snapshot's: its state holds the devices alone.
        await restoreState(await vm.qmp(), spec.restoreFrom, paths.migrateSocket, {
          skipShared: spec.memoryFile?.shared === false,
          run: !spec.loadOnly,
        });
      } catch (err) {
        await vm.stop({ timeoutMs: 1000 });
        throw err;
      }
    }
    return vm;
  }

  adopt(where: VmLocator): QemuVm | undefined {
    // A recorded pid is checked alone (pids are reused); without one, the VM is looked for by its id.
    const pid = where.pid ? (isQemuOf(where.pid, where.id) ? where.pid : undefined) : findQemuOf(where.id);
    return pid ? new QemuVm(where.id, where.runDir, pid) : undefined;
  }
}

/** Whether `pid` is the QEMU of sandbox `id` (pids are reused: check its command line). */
function isQemuOf(pid: number, id: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(`vmbox-${id}`);
  } catch {
    return false;
  }
}

/** The pid of sandbox `id`'s QEMU, found among all processes (when its pid was never recorded). */
function findQemuOf(id: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (pid > 0 && isQemuOf(pid, id)) return pid;
  }
  return undefined;
}

export class QemuVm implements VmHandle {
  readonly consoleLogPath: string;
  private readonly paths: QemuPaths;
  private readonly exit = deferred<VmExit>();
  readonly exited = this.exit.promise;
  private code: number | null = null;
  private running = true;
  /** Resolves once QEMU is up (its sockets exist); rejects if it fails to start. */
  readonly started: Promise<void>;

  constructor(
    readonly id: string,
    readonly runDir: string,
    readonly pid: number,
    private readonly child?: ChildProcess,
  ) {
    this.paths = qemuPaths(runDir);
    this.consoleLogPath = this.paths.consoleLog;
    const ended = (code: number | null, signal: NodeJS.Signals | null) => {
      if (!this.running) return;
      this.running = false;
      this.code = code;
      this.qmpClient?.then(
        (q) => q.close(),
        () => {},
      );
      this.exit.resolve({ code, signal });
    };
    const spawnError = deferred<never>();
    if (child) {
      child.once('error', (err: NodeJS.ErrnoException) => {
        spawnError.reject(err.code === 'ENOENT' ? missing() : new VmboxError('bootFailed', `cannot start QEMU: ${err.message}`));
        ended(null, null);
      });
      child.once('exit', ended);
    } else {
      const timer = setInterval(() => {
        if (!isAlive(pid)) {
          clearInterval(timer);
          ended(null, null);
        }
      }, 250);
      timer.unref();
    }
    this.started = Promise.race([
      this.waitForSocket(this.paths.qmpSocket),
      spawnError.promise,
      this.exited.then(() => {
        throw new VmboxError('bootFailed', `QEMU exited before the VM started: ${this.qemuStderr.trim() || 'no message'}`);
      }),
    ]);
    this.started.catch(() => {});
  }

  /** Polls until QEMU has created `path` (it listens before the guest runs). */
  private async waitForSocket(path: string): Promise<void> {
    for (let i = 0; this.running; i++) {
      try {
        statSync(path);
        return;
      } catch {}
      await sleep(i < 50 ? 2 : 20);
    }
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
    this.qmpClient ??= QmpClient.connect(this.paths.qmpSocket);
    return this.qmpClient;
  }

  /** Connects to the guest agent's virtio-serial port (QEMU listens on it). */
  async connectAgent(): Promise<Duplex> {
    await this.started;
    for (let i = 0; ; i++) {
      try {
        return await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(this.paths.agentSocket);
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
      } catch (err) {
        if (!this.running) throw new VmboxError('bootFailed', `QEMU exited: ${this.qemuStderr.trim() || 'no message'}`);
        if (i > 500) throw new VmboxError('bootFailed', `cannot connect to the agent socket: ${(err as Error).message}`);
        await sleep(2);
      }
    }
  }

  private signal(sig: NodeJS.Signals): void {
    try {
      if (this.child) this.child.kill(sig);
      else if (isQemuOf(this.pid, this.id)) process.kill(this.pid, sig);
    } catch {}
  }

  async stop(opts: StopOptions = {}): Promise<VmExit> {
    if (!this.running) return this.exited;
    // QEMU is detached and unref'd: a stop in progress keeps this process alive until it is done.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      return await this.stopNow(opts);
    } finally {
      clearInterval(keepAlive);
    }
  }

  private async stopNow(opts: StopOptions): Promise<VmExit> {
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
    if (this.running) this.signal('SIGTERM');
    if (await exitedBy(deadline - Date.now())) return this.exited;
    if (this.running) this.signal('SIGKILL');
    return this.exited;
  }

  async metrics(): Promise<VmMetrics> {
    return processMetrics(this.pid);
  }

  async save(statePath: string, opts: { skipSharedMemory?: boolean } = {}): Promise<void> {
    await saveState(await this.qmp(), statePath, this.paths.migrateSocket, opts.skipSharedMemory ?? false);
  }

  async saveLive(statePath: string): Promise<{ downtimeMs: number; stoppedAt: number }> {
    return saveLive(await this.qmp(), statePath, this.paths.migrateSocket);
  }

  async pause(): Promise<void> {
    await (await this.qmp()).execute('stop', {});
  }

  async resume(): Promise<void> {
    await (await this.qmp()).execute('cont', {});
  }

  consoleTail(lines = 20): string {
    return tailLines(this.consoleLogPath, lines);
  }

  /** QEMU's own error output, for diagnostics. */
  get qemuStderr(): string {
    return tailLines(this.paths.qemuLog, 20);
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
