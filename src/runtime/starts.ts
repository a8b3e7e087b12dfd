import { chmodSync, copyFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SpecError } from '../errors.js';
import type { ResolvedImage } from '../images/catalog.js';
import { type SandboxSpec, validateSpec } from '../spec/sandbox.js';
import type { SandboxOrigin } from '../spec/sandboxes.js';
import type { MemoryFile } from '../vmm/provider.js';
import { OVERLAY } from './machine.js';
import { createOverlay } from './overlay.js';
import { hasMemoryFile, SNAPSHOT_FILES, type SnapshotRecord } from './snapshot-record.js';
import type { SandboxRecord } from './state.js';
import type { Templates } from './templates.js';
import { warmRefusal } from './templates.js';

/**
 * How a new sandbox's VM comes to life: booted (cold), restored from its
 * image's template (warm), or restored from a snapshot or a fork's copy. Each
 * gives the disk its overlay is layered on and, for a restore, the saved state.
 */
export interface StartPlan {
  origin: SandboxOrigin;
  base: { path: string; format: 'raw' | 'qcow2' | 'vmdk'; emptyOverlay?: string };
  restoreFrom?: string;
  memoryFile?: MemoryFile;
  /** Files of the snapshot the new sandbox directory needs (the secrets its guest memory holds). */
  copies: { from: string; to: string }[];
  /** Whether the spec's patches are applied (not to a restored snapshot: they are in it already). */
  patches: boolean;
}

/** A cold boot, or warm when the image has a ready template for this shape (the reason when it cannot). */
export async function planNew(image: ResolvedImage, spec: SandboxSpec, templates: Templates, warm: boolean): Promise<StartPlan> {
  const cold = (coldReason?: string): StartPlan => ({
    origin: { start: 'cold', ...(coldReason ? { coldReason } : {}) },
    base: { path: image.rootfsPath, format: image.format ?? 'raw' },
    copies: [],
    patches: true,
  });
  if (!warm) return cold();
  const refusal = warmRefusal(spec);
  if (refusal) return cold(refusal);
  const t = await templates.find(image, spec);
  if (!t) return cold('no template of this image and shape yet (one is being made)');
  return {
    origin: { start: 'warm', template: t.key },
    base: { path: t.disk, format: 'qcow2', emptyOverlay: t.emptyOverlay },
    restoreFrom: t.state,
    // Private: the clone's writes copy pages, the template's file never changes.
    memoryFile: { path: t.memory, shared: false },
    copies: [],
    patches: true,
  };
}

/** A restore of `snap` (a memory snapshot resumes its processes, a disk snapshot boots its disk). */
export function planRestore(snap: SnapshotRecord, dir: string, fork?: { parent: string }): StartPlan {
  return {
    origin: fork ? { start: 'fork', snapshot: snap.id, parent: fork.parent } : { start: 'snapshot', snapshot: snap.id },
    base: { path: join(dir, SNAPSHOT_FILES.disk), format: 'qcow2' },
    ...(snap.kind !== 'memory'
      ? {}
      : hasMemoryFile(snap)
        ? // Mapped private: its pages are shared with the snapshot's other copies until written.
          { restoreFrom: join(dir, SNAPSHOT_FILES.devices), memoryFile: { path: join(dir, SNAPSHOT_FILES.memory), shared: false } }
        : { restoreFrom: join(dir, SNAPSHOT_FILES.state) }),
    copies: snap.files.some((f) => f.name === SNAPSHOT_FILES.secrets)
      ? [{ from: join(dir, SNAPSHOT_FILES.secrets), to: SNAPSHOT_FILES.secrets }]
      : [],
    patches: false,
  };
}

/** What a restore may change: how it is named and kept, what its future commands get, its network. */
const OVERRIDABLE = new Set([
  'name',
  'labels',
  'ephemeral',
  'maxDurationMs',
  'idleTimeoutMs',
  'onIdle',
  'onTimeout',
  'env',
  'network',
  'ports',
  'metricsIntervalMs',
]);
/** Fixed by the snapshot, accepted when they say the same. */
const SAME_OR_REFUSED = ['image', 'cpus', 'memoryMib'] as const;

/**
 * The spec of a sandbox restored from `snap`: the snapshot's, with the overrides
 * the input gives. The environment is merged (it is what future commands get);
 * published ports are the source's own and are not copied.
 */
export function restoreSpec(input: Record<string, unknown>, snap: SnapshotRecord): SandboxSpec {
  for (const key of Object.keys(input)) {
    if (key === 'snapshot' || OVERRIDABLE.has(key)) continue;
    if ((SAME_OR_REFUSED as readonly string[]).includes(key)) {
      const k = key as (typeof SAME_OR_REFUSED)[number];
      if (input[k] === snap.spec[k] || (k === 'image' && input[k] === snap.image.name)) continue;
      throw new SpecError(key, `is the snapshot's (${snap.spec[k]}): a restore keeps it, leave it out`);
    }
    throw new SpecError(key, `cannot change in a restore: the snapshot holds it as it was; leave it out`);
  }
  const { ports: _ports, name: _name, ...kept } = snap.spec;
  const env = { ...snap.spec.env, ...((input.env as Record<string, string>) ?? {}) };
  const spec = validateSpec({ ...kept, ...input, env, snapshot: snap.id });
  return spec;
}

/** The snapshot a create's input names, if it names one. */
export function snapshotRef(input: unknown): string | undefined {
  const ref = (input as { snapshot?: unknown } | null)?.snapshot;
  return typeof ref === 'string' && ref ? ref : undefined;
}

/**
 * The new sandbox's disk in `dir`: a copy of a template's empty layer (a file
 * copy), or a new qcow2 layer over the plan's base (a cold boot's may be larger:
 * `diskMib`); and the files of the snapshot it needs.
 */
export async function makeDisk(plan: StartPlan, dir: string, diskMib?: number): Promise<void> {
  for (const c of plan.copies) copyFileSync(c.from, join(dir, c.to));
  const overlay = join(dir, OVERLAY);
  if (plan.base.emptyOverlay) await copyFile(plan.base.emptyOverlay, overlay);
  else await createOverlay(plan.base.path, overlay, plan.origin.start === 'cold' ? diskMib : undefined, plan.base.format);
  chmodSync(overlay, 0o600); // a template's layer is read-only; the copy is this sandbox's own
}

/** How a new sandbox started, for its log. */
export function describeStart(rec: SandboxRecord, snapshot?: string): string {
  switch (rec.origin.start) {
    case 'warm':
      return `from image ${rec.image.name}, warm from template ${rec.origin.template}`;
    case 'snapshot':
      return `from snapshot ${snapshot}`;
    case 'fork':
      return `as a fork of ${rec.origin.parent}`;
    default:
      return `from image ${rec.image.name}${rec.origin.coldReason ? ` (cold: ${rec.origin.coldReason})` : ''}`;
  }
}
