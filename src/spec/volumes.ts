import { type Static, Type } from '@sinclair/typebox';
import { VOLUME_NAME } from './mounts.js';

const labels = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_./-]{1,63}$' }), Type.String({ maxLength: 256 }));

export const VolumeCreateSchema = Type.Object(
  {
    name: Type.String({ pattern: VOLUME_NAME, description: 'Its name, as mounts name it' }),
    kind: Type.Optional(
      Type.Union([Type.Literal('directory'), Type.Literal('disk')], {
        description:
          'directory (default): shared by any number of sandboxes at once; disk: an ext4 disk image of sizeMib, one writer at a time',
      }),
    ),
    sizeMib: Type.Optional(Type.Integer({ minimum: 16, maximum: 1024 * 1024, description: "A disk volume's capacity (default 1024)" })),
    quotaMib: Type.Optional(
      Type.Integer({
        minimum: 16,
        maximum: 1024 * 1024,
        description: "A directory volume's write budget: its writers get ENOSPC past it (a filesystem of that size the host mounts there)",
      }),
    ),
    labels: Type.Optional(labels),
  },
  { additionalProperties: false },
);
export type VolumeCreate = Static<typeof VolumeCreateSchema>;

export const VolumeInfoSchema = Type.Object({
  name: Type.String(),
  kind: Type.Union([Type.Literal('directory'), Type.Literal('disk')]),
  sizeMib: Type.Optional(Type.Integer({ description: "A disk volume's capacity" })),
  quotaMib: Type.Optional(Type.Integer({ description: "A directory volume's write budget" })),
  labels: labels,
  createdAt: Type.Integer({ description: 'ms since the epoch' }),
  sizeBytes: Type.Integer({ description: 'Host disk its files take' }),
  path: Type.String({ description: 'Its directory (or disk image) on the host' }),
  usedBy: Type.Array(Type.String(), { description: 'Sandboxes that mount it (it cannot be removed while any do)' }),
});
export type VolumeInfo = Static<typeof VolumeInfoSchema>;
