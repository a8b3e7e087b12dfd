import { posix } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { EntryInfo } from '../../spec/files.js';
import { type EntryInfoSchema, FileType } from '../gen/filesystem/filesystem_pb.js';
import type { GuestAccounts } from './guest-users.js';

type E2bEntry = MessageInitShape<typeof EntryInfoSchema>;

const TYPES: Record<EntryInfo['type'], FileType> = {
  file: FileType.FILE,
  dir: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.UNSPECIFIED,
};

/**
 * A guest entry as E2B describes it: owner and group by name, the permission
 * bits alone in `mode` and spelled out in `permissions` as Go writes a
 * FileMode (E2B's envd is Go), a symlink's target made absolute, user
 * metadata (user.e2b.* attributes) by key.
 */
export function e2bEntry(e: EntryInfo, accounts: GuestAccounts): E2bEntry {
  return {
    name: e.name,
    type: TYPES[e.type],
    path: e.path,
    size: BigInt(e.size),
    mode: e.mode & 0o777,
    permissions: goFileMode(e),
    owner: accounts.userNames.get(e.uid) ?? String(e.uid),
    group: accounts.groupNames.get(e.gid) ?? String(e.gid),
    modifiedTime: timestampFromMs(Math.floor(e.mtimeMs)),
    ...(e.linkTarget !== undefined ? { symlinkTarget: posix.resolve(posix.dirname(e.path), e.linkTarget) } : {}),
    ...(e.metadata ? { metadata: e.metadata } : {}),
  };
}

/** Go's `FileMode.String()`: type letters (d, L, u, g, t, ?) or `-`, then rwxrwxrwx. */
export function goFileMode(e: Pick<EntryInfo, 'type' | 'mode'>): string {
  let kind = '';
  if (e.type === 'dir') kind += 'd';
  if (e.type === 'symlink') kind += 'L';
  if (e.mode & 0o4000) kind += 'u';
  if (e.mode & 0o2000) kind += 'g';
  if (e.mode & 0o1000) kind += 't';
  if (e.type === 'other') kind += '?';
  const rwx = [...'rwxrwxrwx'].map((c, i) => (e.mode & (1 << (8 - i)) ? c : '-')).join('');
  return (kind || '-') + rwx;
}
