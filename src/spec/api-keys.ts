import { type Static, Type } from '@sinclair/typebox';

/** An API key as the API shows it: never the key itself (only its hash is kept), except once at creation. */
export const ApiKeyInfoSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  admin: Type.Boolean({ description: 'Sees every sandbox, not only those it created' }),
  createdAt: Type.Integer(),
  lastUsedAt: Type.Union([Type.Integer(), Type.Null()]),
});
export type ApiKeyInfo = Static<typeof ApiKeyInfoSchema>;

export const ApiKeyCreateSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' })),
    admin: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ApiKeyCreate = Static<typeof ApiKeyCreateSchema>;

export const ApiKeyCreatedSchema = Type.Intersect([ApiKeyInfoSchema, Type.Object({ key: Type.String({ description: 'Shown once' }) })]);
export type ApiKeyCreated = Static<typeof ApiKeyCreatedSchema>;
