/**
 * The hypervisor contract. The runtime drives VMs only through these types,
 * so other VMMs (Firecracker, Cloud Hypervisor) can plug in behind them.
 */
export type Accelerator = 'kvm' | 'hvf' | 'tcg';

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
  rootDisk?: { path: string; format: 'qcow2' | 'raw'; readOnly?: boolean };
  /** Directory for this VM's sockets and console log. */
  runDir: string;
  /** Kill the VM when the process that started it dies (throw-away sandboxes). */
  dieWithParent?: boolean;
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

export interface VmHandle {
  readonly id: string;
  readonly pid: number;
  /** Unix socket the guest agent's virtio-serial port is connected to. */
  readonly agentSocketPath: string;
  readonly consoleLogPath: string;
  isRunning(): boolean;
  /** Exit code of the VMM process, or null while it runs. */
  readonly exitCode: number | null;
  readonly exited: Promise<VmExit>;
  /** Graceful power-off, then SIGTERM, then SIGKILL at the deadline. */
  stop(opts?: StopOptions): Promise<VmExit>;
  metrics(): Promise<VmMetrics>;
  /** The console log's last lines, for error messages. */
  consoleTail(lines?: number): string;
}

export interface VmmProvider {
  readonly name: string;
  start(spec: VmSpec): Promise<VmHandle>;
}
