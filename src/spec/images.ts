import { type Static, Type } from '@sinclair/typebox';

/**
 * The image API's requests, responses and progress messages. One schema each:
 * the route's validation, the OpenAPI document and the SDK's types.
 */

export const PullPolicy = Type.Union([Type.Literal('if-missing'), Type.Literal('always'), Type.Literal('never')], {
  description: 'When to pull: if-missing (default), always, never',
});
export type PullPolicy = Static<typeof PullPolicy>;

const platform = Type.String({
  pattern: '^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$',
  description: 'os/arch[/variant] to take from a multi-platform image (default: the server’s)',
});
const insecure = Type.Boolean({
  description: 'Talk plain HTTP to the registry the reference names (loopback or trusted networks only)',
});

/** How a sandbox's image is found on the server, and whether it may start warm: the query of `POST /v1/sandboxes`. */
export const CreateQuery = Type.Object(
  {
    pull: Type.Optional(PullPolicy),
    platform: Type.Optional(platform),
    insecure: Type.Optional(insecure),
    warm: Type.Optional(Type.Boolean({ description: "Restore from the image's template when it has one (default true); false boots" })),
  },
  { additionalProperties: false },
);
export type CreateQuery = Static<typeof CreateQuery>;

export const Credentials = Type.Object(
  { username: Type.String({ minLength: 1 }), password: Type.String() },
  { additionalProperties: false, description: 'Registry login for this pull (else the server’s own configuration)' },
);
export type Credentials = Static<typeof Credentials>;

export const PullBody = Type.Object(
  {
    reference: Type.String({ minLength: 1, description: 'An image reference (alpine:3.20) or a built-in image (base)' }),
    policy: Type.Optional(PullPolicy),
    platform: Type.Optional(platform),
    insecure: Type.Optional(insecure),
    auth: Type.Optional(Credentials),
  },
  { additionalProperties: false },
);
export type PullBody = Static<typeof PullBody>;

export const ImageRef = Type.Object({
  reference: Type.String({ minLength: 1, description: 'Image reference, URL-encoded (slashes included)' }),
});

export const ImportQuery = Type.Object(
  { name: Type.Optional(Type.String({ minLength: 1, description: 'Name of the image (required for a plain rootfs tarball)' })) },
  { additionalProperties: false },
);

export const RemoveImageQuery = Type.Object(
  {
    force: Type.Optional(
      Type.Boolean({ description: 'Untag even while sandboxes use it; its disk and blobs stay until the last of them is removed' }),
    ),
  },
  { additionalProperties: false },
);

/** One image in the list. */
export const ImageSummary = Type.Object({
  reference: Type.String({ description: 'Normalised reference (docker.io/library/alpine:3.20), or a built-in name' }),
  digest: Type.String({ description: 'Manifest digest; empty for a built-in image' }),
  size: Type.Integer({ description: 'Bytes: compressed layers, or the disk of a built-in image' }),
  created: Type.Optional(Type.String({ description: 'When the image was built (ISO 8601)' })),
  builtin: Type.Boolean(),
  usedBy: Type.Array(Type.String(), { description: 'Names of the sandboxes made from it' }),
});
export type ImageSummary = Static<typeof ImageSummary>;

export const ImageLayer = Type.Object({ digest: Type.String(), mediaType: Type.String(), size: Type.Integer() });

/** Everything about one image: what a sandbox made from it runs with. */
export const ImageDetail = Type.Object({
  reference: Type.String(),
  digest: Type.String(),
  created: Type.Optional(Type.String()),
  platform: Type.String({ description: 'os/arch' }),
  env: Type.Array(Type.String()),
  entrypoint: Type.Array(Type.String()),
  cmd: Type.Array(Type.String()),
  workingDir: Type.String(),
  user: Type.String(),
  layers: Type.Array(ImageLayer),
});
export type ImageDetail = Static<typeof ImageDetail>;

export const RemoveResult = Type.Object({
  reference: Type.String(),
  keptFor: Type.Array(Type.String(), { description: 'Sandboxes (by name) whose disk is kept until they are removed' }),
});
export type RemoveResult = Static<typeof RemoveResult>;

export const PruneResult = Type.Object({
  deleted: Type.Integer({ description: 'Files deleted (blobs and disks)' }),
  freedBytes: Type.Integer({ description: 'Bytes of blobs and disks freed' }),
});
export type PruneResult = Static<typeof PruneResult>;

/**
 * The lines of a pull's response (NDJSON, one object a line): the layers once
 * the manifest is known, byte counts as they arrive, then `done` or `error`.
 */
export const PullMessage = Type.Union([
  Type.Object({ type: Type.Literal('manifest'), layers: Type.Array(ImageLayer) }),
  Type.Object({
    type: Type.Literal('progress'),
    digest: Type.String(),
    received: Type.Integer(),
    total: Type.Integer(),
    done: Type.Optional(Type.Boolean()),
  }),
  Type.Object({ type: Type.Literal('done'), image: ImageDetail }),
  Type.Object({ type: Type.Literal('error'), code: Type.String(), message: Type.String() }),
]);
export type PullMessage = Static<typeof PullMessage>;
export type PullProgress = Extract<PullMessage, { type: 'manifest' } | { type: 'progress' }>;
