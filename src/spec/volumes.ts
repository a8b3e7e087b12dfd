import { type Static, Type } from '@sinclair/typebox';
import { VOLUME_NAME } from './mounts.js';

const labels = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_./-]{1,63}$' }), Type.String({ maxLength: 256 }));

export const VolumeCreateSchema = Type.Object(
  {
    name: Type.String({ pattern: VOLUME_NAME, description: 'Its name, as mounts name it' }),
    labels: Type.Optional(labels),
  },
  { additionalProperties: false },
);
export type VolumeCreate = Static<typeof VolumeCreateSchema>;

export const VolumeInfoSchema = Type.Object({
  name: Type.String(),
  kind: Type.Literal('directory'),
  labels: labels,
  createdAt: Type.Integer({ description: 'ms since the epoch' }),
  sizeBytes: Type.Integer({ description: 'Host disk its files take' }),
  path: Type.String({ description: 'Its directory on the host' }),
  usedBy: Type.Array(Type.String(), { description: 'Sandboxes that mount it (it cannot be removed while any do)' }),
});
export type VolumeInfo = Static<typeof VolumeInfoSchema>;
