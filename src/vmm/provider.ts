import type { Duplex } from 'node:stream';

/**
 * The hypervisor contract. The runtime drives VMs only through these types
 * (a provider is injected into it), so other VMMs (Firecracker, Cloud
 * Hypervisor) plug in behind them without touching the runtime.
 */
export type Accelerator = 'kvm' | 'hvf' | 'tcg';

/** A disk image on virtio-blk; `serial` names it to the guest (/sys/block/vdX/serial). */
export interface DiskSpec {
  path: string;
  format: 'qcow2' | 'raw' | 'vmdk';
  readOnly?: boolean;
  serial?: string;
  throttle?: DiskThrottle;
}

/** A disk's I/O budget (QEMU's block throttling), reads and writes together. */
export interface DiskThrottle {
  bytesPerSec?: number;
  opsPerSec?: number;
}

/** A host directory shown to the guest (virtio-9p for QEMU), mounted by the agent by `tag`. */
export interface ShareSpec {
  tag: string;
  hostPath: string;
  readOnly?: boolean;
  /** Guest-side owner and mode kept in host xattrs (`mapped-xattr`), or the host's own metadata (`passthrough`). */
  security?: 'mapped-xattr' | 'passthrough' | 'none';
}

/**
 * A network interface. `stream` connects the guest's NIC to a unix socket the
 * host's network service listens on (each frame length-prefixed), so every
 * packet leaves through a process vmbox controls.
 */
export interface NicSpec {
  id: string;
  mac: string;
  backend: { kind: 'stream'; socketPath: string };
}

/** The guest's RAM in a file, so a saved VM can be restored by mapping it (shared) or cloned (private, copy-on-write). */
export interface MemoryFile {
  path: string;
  shared: boolean;
}

export interface VmSpec {
  /** Sandbox id; names the VM in process listings. */
  id: string;
  cpus: number;
  memoryMib: number;
  accel: Accelerator;
  /** Uncompressed kernel with a PVH entry point, or a bzImage. */
  kernelPath: string;
  initrdPath: string;
  /** Extra kernel command-line words (`vmbox.hostname=…`). */
  kernelArgs?: string[];
  rootDisk?: { path: string; format: 'qcow2' | 'raw'; readOnly?: boolean; throttle?: DiskThrottle };
  /** Further disks (volumes, disk images), in order after the root disk; the guest finds each by its serial. */
  extraDisks?: DiskSpec[];
  shares?: ShareSpec[];
  nics?: NicSpec[];
  memoryFile?: MemoryFile;
  /**
   * Start from a state written by `VmHandle.save`/`saveLive` instead of booting. With a
   * private memory file it is a devices-only state over that file (saved with `skipSharedMemory`).
   */
  restoreFrom?: string;
  /** Load `restoreFrom` and stay paused, never running (to be saved again): its disk is not opened. */
  loadOnly?: boolean;
  /** Directory for this VM's sockets and console log. */
  runDir: string;
  /**
   * The jail launcher (jail/vmbox-jail.c, built by setup): given, and the host able,
   * the VMM runs as its own uid in namespaces of its own (see vmm/qemu/jail.ts).
   */
  jailLauncher?: string;
}

export interface VmMetrics {
  /** CPU time of the VMM process, user + system, in ms. */
  cpuMs: number;
  /** Resident memory of the VMM process, in bytes. */
  rssBytes: number;
}

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StopOptions {
  /** Asks the guest to power off (the agent's shutdown); tried first. */
  graceful?: () => Promise<void>;
  /** Deadline for the whole stop; SIGKILL when it passes. */
  timeoutMs?: number;
}

/** Where an existing VM is: what the runtime recorded about it. */
export interface VmLocator {
  id: string;
  runDir: string;
  /** The VMM's pid when it was recorded (then only it is checked); without one the provider looks for the VM by id. */
  pid?: number | null;
}

export interface VmHandle {
  readonly id: string;
  readonly pid: number;
  isRunning(): boolean;
  /** Exit code of the VMM process, or null while it runs. */
  readonly exitCode: number | null;
  readonly exited: Promise<VmExit>;
  /** A byte stream to the guest agent's port. */
  connectAgent(): Promise<Duplex>;
  /** Graceful power-off, then SIGTERM, then SIGKILL at the deadline. */
  stop(opts?: StopOptions): Promise<VmExit>;
  metrics(): Promise<VmMetrics>;
  /**
   * Pauses the guest and writes its state to `statePath`; the VM stays paused. With
   * `skipSharedMemory` (a VM whose RAM is a shared file) only the devices are written.
   */
  save(statePath: string, opts?: { skipSharedMemory?: boolean }): Promise<void>;
  /**
   * Writes memory and devices to `statePath` while the guest runs, pausing it only
   * for the last pass; the VM is left paused (disks flushed) until `resume`.
   * `stoppedAt`: when the guest stopped (ms since the epoch), as the VMM saw it.
   */
  saveLive(statePath: string): Promise<{ downtimeMs: number; stoppedAt: number }>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** The console log's last lines, for error messages. */
  consoleTail(lines?: number): string;
}

export interface VmmProvider {
  readonly name: string;
  start(spec: VmSpec): Promise<VmHandle>;
  /** A handle on a VM an earlier process started (after a server restart), or undefined when it is not running. */
  adopt(where: VmLocator): VmHandle | undefined;
}
