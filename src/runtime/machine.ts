import { basename, dirname, join } from 'node:path';
import { VmboxError, VmDiedError } from '../errors.js';
import { AgentClient, type GuestMount } from '../guest/client.js';
import { ensureAssets } from '../setup/assets.js';
import { capabilityMask } from '../spec/capabilities.js';
import type { Patch, SandboxSpec } from '../spec/sandbox.js';
import { mark } from '../util/trace.js';
import type { DiskSpec, MemoryFile, ShareSpec, VmHandle, VmmProvider } from '../vmm/provider.js';
import { applyPatches } from './patches.js';

/** The copy-on-write disk of a sandbox, in its directory. */
export const OVERLAY = 'rootfs.qcow2';
/** The 9p tag of a root that is a host directory. */
const ROOT_TAG = 'vmboxroot';

const bootTimeoutMs = () => Number(process.env.VMBOX_BOOT_TIMEOUT_MS || 60_000);

/**
 * One sandbox's VM and the connection to its agent: what the runtime boots,
 * adopts after a restart, and stops. It knows nothing of the database.
 */
export class Machine {
  private constructor(
    readonly vm: VmHandle,
    readonly agent: AgentClient,
  ) {}

  /**
   * Boots a VM on the overlay already in `dir`; it is detached and outlives
   * this process. `onSpawn` learns the VMM's pid as soon as it exists.
   */
  static async boot(
    provider: VmmProvider,
    o: {
      id: string;
      dir: string;
      spec: SandboxSpec;
      patches?: Patch[];
      /** Resume the VM saved in this state file instead of booting one. */
      restoreFrom?: string;
      /** Guest RAM in a file: shared (a template being made) or private over a template's (a warm clone). */
      memoryFile?: MemoryFile;
      /** Host directories exported to the guest (9p), and the mounts the agent makes once it answers (a fresh guest only: then the spec's init is handed PID 1 too). */
      shares?: ShareSpec[];
      disks?: DiskSpec[];
      mounts?: GuestMount[];
      signal?: AbortSignal;
      onSpawn?: (pid: number) => void;
    },
  ): Promise<Machine> {
    const assets = await ensureAssets();
    mark('assets');
    let vm: VmHandle | undefined;
    try {
      vm = await provider.start({
        id: o.id,
        cpus: o.spec.cpus,
        memoryMib: o.spec.memoryMib,
        accel: assets.accel.accel,
        kernelPath: assets.kernelPath,
        initrdPath: assets.initrd,
        kernelArgs: [
          `vmbox.hostname=${hostnameOf(o.id, o.spec)}`,
          ...(o.spec.logLevel ? [`vmbox.loglevel=${o.spec.logLevel}`] : []),
          ...(o.spec.rootDir ? [`vmbox.root=${ROOT_TAG}`, 'vmbox.rootfs=9p'] : []),
        ],
        // A host directory as root is a 9p share (first, below); otherwise the sandbox's own disk layer.
        ...(o.spec.rootDir
          ? {}
          : { rootDisk: { path: join(o.dir, OVERLAY), format: 'qcow2' as const, ...(o.spec.diskIo ? { throttle: o.spec.diskIo } : {}) } }),
        runDir: o.dir,
        ...(assets.jailLauncher ? { jailLauncher: assets.jailLauncher } : {}),
        ...(o.shares?.length || o.spec.rootDir
          ? {
              shares: [
                ...(o.spec.rootDir ? [{ tag: ROOT_TAG, hostPath: o.spec.rootDir, security: 'passthrough' as const }] : []),
                ...(o.shares ?? []),
              ],
            }
          : {}),
        ...(o.disks?.length ? { extraDisks: o.disks } : {}),
        ...(o.restoreFrom ? { restoreFrom: o.restoreFrom } : {}),
        ...(o.memoryFile ? { memoryFile: o.memoryFile } : {}),
      });
      o.onSpawn?.(vm.pid);
      mark('vm started');
      const agent = await connectAgent(vm, hostnameOf(o.id, o.spec), o.signal);
      mark('agent ready');
      if (o.patches?.length) await applyPatches(agent, o.patches);
      for (const m of o.mounts ?? []) await agent.mount(m);
      // Last, once the system is as the spec wants it: the image's own init becomes PID 1.
      if (o.spec.init && o.mounts) {
        const { path, args, env } = o.spec.init;
        await agent.handoffInit({ path, args, env: env && Object.entries(env).map(([k, v]) => `${k}=${v}`), caps: capabilityMask(o.spec) });
      }
      return new Machine(vm, agent);
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

  /** Reconnects to a VM an earlier process started (after a server restart). */
  static async adopt(vm: VmHandle, spec?: Pick<SandboxSpec, 'hostname'>): Promise<Machine> {
    return new Machine(vm, await connectAgent(vm, hostnameOf(vm.id, spec), undefined, 10_000));
  }

  /**
   * Saves the whole VM — memory, devices, at one instant, the disk flushed with
   * them — to `statePath`, then ends its QEMU.
   */
  async save(statePath: string, opts: { skipSharedMemory?: boolean } = {}): Promise<void> {
    await this.vm.save(statePath, opts);
    await this.vm.stop({ timeoutMs: 2000 });
    this.agent.close();
  }

  /** Powers the guest off (the agent first, then signals); the disk stays. */
  async stop(opts: { graceful?: boolean; timeoutMs?: number } = {}): Promise<void> {
    await this.vm.stop({
      graceful: opts.graceful ? () => this.agent.shutdown() : undefined,
      timeoutMs: opts.timeoutMs ?? 5000,
    });
    this.agent.close();
  }
}

/** A sandbox's hostname: the spec's, else its own; also when its VM is a restored copy of another's (the hello sets it). */
export function hostnameOf(id: string, spec?: Pick<SandboxSpec, 'hostname'>): string {
  return spec?.hostname ?? `vmbox-${id.slice(0, 8)}`;
}

/** What a saved VM's memory was running: a restore needs the same kernel and agent (their cache keys). */
export function guestIdentity(assets: { kernelPath: string; initrd: string }): { kernel: string; agent: string } {
  return { kernel: basename(dirname(assets.kernelPath)), agent: basename(dirname(assets.initrd)) };
}

function connectAgent(vm: VmHandle, hostname: string, signal?: AbortSignal, timeoutMs = bootTimeoutMs()): Promise<AgentClient> {
  return vm.connectAgent().then((conn) => AgentClient.connect(conn, { timeoutMs, signal, hostname, closedError: () => diedError(vm) }));
}

function diedError(vm: VmHandle): VmDiedError {
  const how = vm.exitCode !== null ? `QEMU exited with code ${vm.exitCode}` : `QEMU (pid ${vm.pid}) closed the agent connection`;
  return new VmDiedError(`the sandbox's VM died: ${how}`, vm.consoleTail(10));
}
