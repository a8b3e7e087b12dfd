import { type Static, Type } from '@sinclair/typebox';

/**
 * Snapshots as the API shows them. A `memory` snapshot holds a running
 * sandbox's memory, devices and disk at one instant (a restore carries on its
 * processes); a `disk` snapshot holds a stopped sandbox's disk (a restore boots).
 */
export const SnapshotInfoSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  kind: Type.Union([Type.Literal('memory'), Type.Literal('disk')]),
  state: Type.Union([Type.Literal('creating'), Type.Literal('ready')]),
  labels: Type.Record(Type.String(), Type.String()),
  createdAt: Type.Integer({ description: 'ms since the epoch' }),
  source: Type.Union([Type.Object({ id: Type.String(), name: Type.String() }), Type.Null()], {
    description: 'The sandbox it was taken from (null for an imported one)',
  }),
  image: Type.String({ description: 'The image the sandbox was made from' }),
  cpus: Type.Integer(),
  memoryMib: Type.Integer(),
  sizeBytes: Type.Integer({ description: 'Host disk its files take' }),
  sharedMemory: Type.Boolean({ description: 'Whether its memory is a file its restores map and share (made in the background)' }),
  integrity: Type.Boolean({ description: 'Whether sha256 sums were recorded, and are checked at each restore' }),
  parent: Type.Union([Type.String(), Type.Null()], { description: 'The snapshot whose disk this one is layered on' }),
  usedBy: Type.Array(Type.String(), { description: 'Sandboxes and snapshots layered on it: it cannot be removed while any are' }),
});
export type SnapshotInfo = Static<typeof SnapshotInfoSchema>;

const labels = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_./-]{1,63}$' }), Type.String({ maxLength: 256 }));

export const SnapshotCreateSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' })),
    labels: Type.Optional(labels),
    force: Type.Optional(Type.Boolean({ description: 'Replace a snapshot of that name (refused while something is layered on it)' })),
    integrity: Type.Optional(Type.Boolean({ description: 'Record sha256 of each file; every restore checks them' })),
  },
  { additionalProperties: false },
);
export type SnapshotCreate = Static<typeof SnapshotCreateSchema>;

export const ForkRequestSchema = Type.Object(
  {
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, default: 1 })),
    names: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' }), { maxItems: 64 })),
    labels: Type.Optional(labels),
    shareMemory: Type.Optional(
      Type.Boolean({
        description:
          'Make the copies from a memory file they share (memory held once; the file takes a few hundred ms first). Default: from 4 copies',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ForkRequest = Static<typeof ForkRequestSchema>;

/** A warm-start template: an image booted to "agent ready" and saved, per shape. */
export const TemplateInfoSchema = Type.Object({
  key: Type.String({ description: 'Hash of its inputs: image disk, kernel, agent, cpus, memory' }),
  image: Type.String(),
  cpus: Type.Integer(),
  memoryMib: Type.Integer(),
  disk: Type.String({ description: "The image's disk it is layered on" }),
  kernel: Type.String(),
  agent: Type.String(),
  createdAt: Type.Integer(),
  bootMs: Type.Integer({ description: 'How long its one boot took' }),
  sizeBytes: Type.Integer({ description: 'Host disk its files take (its RAM file is sparse: what the guest touched)' }),
  usedBy: Type.Array(Type.String()),
});
export type TemplateInfo = Static<typeof TemplateInfoSchema>;
