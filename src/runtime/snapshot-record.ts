import type { ResolvedImage } from '../images/catalog.js';
import type { SandboxSpec } from '../spec/sandbox.js';
import type { SnapshotInfo } from '../spec/snapshots.js';

/** The files a snapshot's directory holds. */
export const SNAPSHOT_FILES = {
  /** Memory and devices (a QEMU migration stream); memory snapshots only. */
  state: 'vm.state',
  /** The disk at the snapshot's instant: a qcow2 layer over its parent's (or the image's) disk. */
  disk: 'disk.qcow2',
  /** The secrets' placeholders and CA the guest's memory already holds. */
  secrets: 'secrets-state.json',
  /**
   * Made after the snapshot, in the background: its memory as a file (sparse: what
   * the guest had touched) and its devices alone. Restores then map the file
   * privately, so the copies of one snapshot share every page none of them wrote.
   */
  memory: 'memory',
  devices: 'devices.state',
} as const;

/** One snapshot as the state database keeps it. */
export interface SnapshotRecord {
  id: string;
  name: string;
  kind: 'memory' | 'disk';
  /** `creating` until every file is written: recovery removes a snapshot still creating. */
  state: 'creating' | 'ready';
  labels: Record<string, string>;
  createdAt: number;
  source: { id: string; name: string } | null;
  /** A fork's own copy of its parent: not listed, removed with the last sandbox layered on it. */
  hidden: boolean;
  /** The spec a restore starts from (overrides go on top). */
  spec: SandboxSpec;
  image: ResolvedImage;
  /** The guest kernel and agent its memory was running: a restore needs the same. */
  kernel: string;
  agent: string;
  /** What its disk layer's backing file is: a template's disk, another snapshot's, or (neither) the image's. */
  parent: string | null;
  template: string | null;
  files: { name: string; bytes: number; sha256?: string }[];
  integrity: boolean;
}

/** Whether the snapshot's memory has been made a file (restores map it, sharing it). */
export function hasMemoryFile(r: SnapshotRecord): boolean {
  return r.files.some((f) => f.name === SNAPSHOT_FILES.memory) && r.files.some((f) => f.name === SNAPSHOT_FILES.devices);
}

export function snapshotInfo(r: SnapshotRecord, usedBy: string[], sizeBytes: number): SnapshotInfo {
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    state: r.state,
    labels: r.labels,
    createdAt: r.createdAt,
    source: r.source,
    image: r.image.name,
    cpus: r.spec.cpus,
    memoryMib: r.spec.memoryMib,
    sizeBytes,
    sharedMemory: hasMemoryFile(r),
    integrity: r.integrity,
    parent: r.parent,
    usedBy,
  };
}
