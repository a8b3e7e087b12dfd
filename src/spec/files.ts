import { type Static, Type } from '@sinclair/typebox';

/** A guest file's metadata, as the agent reports it. */
export const FileStatSchema = Type.Object({
  type: Type.Union([Type.Literal('file'), Type.Literal('dir'), Type.Literal('symlink'), Type.Literal('other')]),
  size: Type.Integer(),
  mode: Type.Integer(),
  uid: Type.Integer(),
  gid: Type.Integer(),
  mtimeMs: Type.Number(),
  linkTarget: Type.Optional(Type.String()),
  metadata: Type.Optional(
    Type.Record(Type.String(), Type.String(), { description: "User metadata: the file's user.e2b.* extended attributes, by KEY" }),
  ),
});
export type FileStat = Static<typeof FileStatSchema>;

/** A guest file system entry as the API describes it. */
export const EntryInfoSchema = Type.Intersect([FileStatSchema, Type.Object({ name: Type.String(), path: Type.String() })]);
export type EntryInfo = Static<typeof EntryInfoSchema>;

/** One change seen by a directory watch (inotify), named as fsnotify names them. */
export const WatchEventSchema = Type.Object({
  type: Type.Union(['create', 'write', 'remove', 'rename', 'chmod', 'overflow'].map((t) => Type.Literal(t))),
  path: Type.String(),
  isDir: Type.Boolean(),
});
export type WatchEvent = {
  type: 'create' | 'write' | 'remove' | 'rename' | 'chmod' | 'overflow';
  path: string;
  isDir: boolean;
};
