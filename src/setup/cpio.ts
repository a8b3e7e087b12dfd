import { gzipSync } from 'node:zlib';

export interface CpioEntry {
  name: string;
  /** Full st_mode: type bits and permissions (0o100755 file, 0o40755 dir, 0o20600 char dev). */
  mode: number;
  data?: Buffer;
  rdev?: { major: number; minor: number };
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;
const hex8 = (n: number) => n.toString(16).padStart(8, '0');

/**
 * A gzip'd newc cpio archive, the initramfs format. Written here rather than
 * with cpio(1) so entries (like /dev/console) need no root-owned staging files.
 */
export function buildInitramfs(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((e, i) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const header = [
      '070701',
      hex8(i + 1), // ino
      hex8(e.mode),
      hex8(0), // uid
      hex8(0), // gid
      hex8(1), // nlink
      hex8(0), // mtime: fixed, so the archive is reproducible
      hex8(data.length),
      hex8(0),
      hex8(0),
      hex8(e.rdev?.major ?? 0),
      hex8(e.rdev?.minor ?? 0),
      hex8(name.length),
      hex8(0),
    ].join('');
    parts.push(Buffer.from(header), name, Buffer.alloc(pad4(110 + name.length)), data, Buffer.alloc(pad4(data.length)));
  });
  return gzipSync(Buffer.concat(parts), { level: 6 });
}
