import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError, VmDiedError } from '../errors.js';
import { AgentClient, type ExecExit, type ExecStreams, type GuestProcess } from '../guest/client.js';
import { type ResolvedImage, resolveImage } from '../images/catalog.js';
import type { PullOptions } from '../images/pull.js';
import { paths } from '../paths.js';
import { ensureAssets } from '../setup/assets.js';
import type { SandboxSpec } from '../spec/sandbox.js';
import { type SandboxSpecInput, validateSpec } from '../spec/sandbox.js';
import { mark } from '../util/trace.js';
import { QemuProvider, type QemuVm } from '../vmm/qemu/provider.js';
import { reapOrphans, recordOwner } from './orphans.js';
import { createOverlay } from './overlay.js';
import { applyPatches } from './patches.js';

/** The copy-on-write disk of a sandbox, in its directory. */
export const OVERLAY = 'rootfs.qcow2';

const bootTimeoutMs = () => Number(process.env.VMBOX_BOOT_TIMEOUT_MS || 60_000);

export interface ExecOptions extends ExecStreams {
  /** Added to the image's and the sandbox's environment. */
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** Give the command a stdin pipe. */
  stdin?: boolean;
  timeoutMs?: number;
  /** Run on a terminal of this size. */
  pty?: { cols: number; rows: number };
  /** Keep the process when the caller lets go (background commands, terminals). */
  detached?: boolean;
}

/**
 * One running microVM: its disk overlay, its QEMU, and the agent connection.
 * `destroy()` removes everything it created.
 */
export class Sandbox {
  private destroyed = false;

  private constructor(
    readonly id: string,
    readonly spec: SandboxSpec,
    readonly image: ResolvedImage,
    readonly dir: string,
    readonly vm: QemuVm,
    readonly agent: AgentClient,
  ) {}

  /**
   * Boots a throw-away sandbox (tests, benchmarks): a fresh id, directory and
   * overlay, and a VM that dies with this process. `image` is the spec's image
   * already resolved; otherwise it is pulled per `pull`.
   */
  static async create(
    input: SandboxSpecInput,
    opts: { signal?: AbortSignal; pull?: PullOptions; image?: ResolvedImage } = {},
  ): Promise<Sandbox> {
    const spec = validateSpec(input);
    await ensureAssets();
    const image = opts.image ?? (await resolveImage(spec.image, opts.pull));
    mark('assets');
    reapOrphans();
    const id = randomBytes(6).toString('hex');
    const dir = paths.sandbox(id);
    mkdirSync(dir, { recursive: true });
    recordOwner(dir, image.name);
    try {
      await createOverlay(image.rootfsPath, join(dir, OVERLAY), spec.diskMib);
      mark('overlay');
      return await Sandbox.boot({ id, dir, spec, image, throwaway: true, signal: opts.signal });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Boots a VM on the overlay already in `dir`. A throw-away VM dies with this
   * process; otherwise it is detached and outlives it (`attach` finds it again).
   * `onSpawn` learns QEMU's pid as soon as it exists, before the guest is up.
   */
  static async boot(o: {
    id: string;
    dir: string;
    spec: SandboxSpec;
    image: ResolvedImage;
    throwaway?: boolean;
    signal?: AbortSignal;
    onSpawn?: (pid: number) => void;
  }): Promise<Sandbox> {
    const assets = await ensureAssets();
    let vm: QemuVm | undefined;
    try {
      vm = await new QemuProvider().start({
        id: o.id,
        cpus: o.spec.cpus,
        memoryMib: o.spec.memoryMib,
        accel: assets.accel.accel,
        kernelPath: assets.kernelPath,
        initrdPath: assets.initrd,
        kernelArgs: [`vmbox.hostname=vmbox-${o.id.slice(0, 8)}`],
        rootDisk: { path: join(o.dir, OVERLAY), format: 'qcow2' },
        runDir: o.dir,
        dieWithParent: o.throwaway ?? false,
      });
      o.onSpawn?.(vm.pid);
      mark('qemu started');
      const agent = await connectAgent(vm, o.signal);
      mark('agent ready');
      if (o.spec.patches?.length) await applyPatches(agent, o.spec.patches);
      return new Sandbox(o.id, o.spec, o.image, o.dir, vm, agent);
    } catch (err) {
      const tail = vm?.consoleTail() ?? '';
      await vm?.stop({ timeoutMs: 1000 });
      if (err instanceof VmboxError && err.code === 'vmDied') {
        throw new VmboxError('bootFailed', `the sandbox did not boot: ${err.message}`);
      }
      if (err instanceof VmboxError && err.code === 'bootFailed' && tail) {
        throw new VmboxError('bootFailed', `${err.message}\n--- last console lines ---\n${tail}`);
      }
      throw err;
    }
  }

  /** Reconnects to a VM a previous process started (after a server restart). */
  static async attach(o: { id: string; dir: string; spec: SandboxSpec; image: ResolvedImage; pid: number }): Promise<Sandbox> {
    const vm = new QemuProvider().attach(o.id, o.dir, o.pid);
    const agent = await connectAgent(vm, undefined, 10_000);
    return new Sandbox(o.id, o.spec, o.image, o.dir, vm, agent);
  }

  /** Starts `argv` in the guest with the image's config, the spec's and the call's settings layered in that order. */
  exec(argv: string[], opts: ExecOptions = {}): GuestProcess {
    if (argv.length === 0) throw new VmboxError('invalidArgument', 'empty command: give the program to run and its arguments');
    const env = new Map<string, string>();
    for (const kv of this.image.config.env) {
      const i = kv.indexOf('=');
      env.set(kv.slice(0, i), kv.slice(i + 1));
    }
    for (const [k, v] of Object.entries({ ...this.spec.env, ...opts.env })) env.set(k, v);
    return this.agent.exec(
      {
        argv,
        env: [...env].map(([k, v]) => `${k}=${v}`),
        cwd: opts.cwd ?? this.spec.workdir ?? this.image.config.workingDir,
        user: opts.user ?? this.spec.user ?? this.image.config.user,
        stdin: opts.stdin,
        timeoutMs: opts.timeoutMs,
        pty: opts.pty,
        detached: opts.detached,
      },
      opts,
    );
  }

  /** Runs a command to completion, collecting its output (for short outputs). */
  async run(argv: string[], opts: ExecOptions = {}): Promise<ExecExit & { stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const p = this.exec(argv, {
      ...opts,
      onStdout: (d) => {
        stdout += d.toString();
        return opts.onStdout?.(d);
      },
      onStderr: (d) => {
        stderr += d.toString();
        return opts.onStderr?.(d);
      },
    });
    return { ...(await p.exit), stdout, stderr };
  }

  /** Powers the guest off (the agent first, then signals); the disk stays. */
  async stop(opts: { graceful?: boolean; timeoutMs?: number } = {}): Promise<void> {
    await this.vm.stop({
      graceful: opts.graceful ? () => this.agent.shutdown() : undefined,
      timeoutMs: opts.timeoutMs ?? 5000,
    });
    this.agent.close();
  }

  /** Stops the VM and deletes the sandbox's files. Safe to call twice. */
  async destroy(opts: { graceful?: boolean } = {}): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.stop(opts);
    rmSync(this.dir, { recursive: true, force: true });
    mark('destroyed');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

function connectAgent(vm: QemuVm, signal?: AbortSignal, timeoutMs = bootTimeoutMs()): Promise<AgentClient> {
  return vm.connectAgent().then((conn) => AgentClient.connect(conn, { timeoutMs, signal, closedError: () => diedError(vm) }));
}

function diedError(vm: QemuVm): VmDiedError {
  const how = vm.exitCode !== null ? `QEMU exited with code ${vm.exitCode}` : `QEMU (pid ${vm.pid}) closed the agent connection`;
  return new VmDiedError(`the sandbox's VM died: ${how}`, vm.consoleTail(10));
}
