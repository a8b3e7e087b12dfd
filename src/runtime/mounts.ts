import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { SpecError, VmboxError } from '../errors.js';
import type { GuestMount } from '../guest/client.js';
import { builtinConfig, type ResolvedImage } from '../images/catalog.js';
import type { Mount } from '../spec/mounts.js';
import type { SandboxSpec } from '../spec/sandbox.js';
import type { DiskSpec, ShareSpec } from '../vmm/provider.js';
import type { Volumes } from './volumes.js';

/**
 * 9p's options in the guest: 9P2000.L (Linux semantics, xattrs), 256 KiB
 * messages (fewer round trips for large files), and no page cache but for
 * mmap, so a host write is seen at the guest's next read.
 */
const NINE_P_OPTIONS = 'trans=virtio,version=9p2000.L,msize=262144,cache=mmap';

/** What a sandbox's mounts are to the VM (9p shares and disks QEMU exports) and to its agent (mounts it makes). */
export interface SandboxMounts {
  shares: ShareSpec[];
  disks: DiskSpec[];
  guest: GuestMount[];
}

/** Disk image formats QEMU opens here; anything else (or a corrupt file) is refused before a create. */
const DISK_FORMATS = ['qcow2', 'raw', 'vmdk'] as const;
type DiskFormat = (typeof DISK_FORMATS)[number];

/**
 * Checks a create's mounts before anything is made: host directories exist
 * and may be named (only by clients on this machine), volumes as their mode
 * wants, xattrs where stat virtualization is strict. Makes nothing (the
 * volumes a create wants made are made once its record is). Throws SpecError naming the mount.
 */
export function prepareMounts(spec: SandboxSpec, o: { hostPaths: boolean; volumes: Volumes }): SandboxSpec {
  const mounts = spec.mounts ?? [];
  if (!mounts.length) return spec;
  const resolved = mounts.map((m, i): Mount => {
    if (m.type === 'disk') {
      if (!o.hostPaths)
        throw new SpecError(
          `mounts.${i}.source`,
          "a disk mount names a host file, which only clients on the server's machine may do (its unix socket)",
        );
      diskFormat(m.source, `mounts.${i}.source`);
      return m;
    }
    if (m.type !== 'bind') return m;
    const field = `mounts.${i}.source`;
    if (!o.hostPaths)
      throw new SpecError(
        field,
        "a bind mount names a host directory, which only clients on the server's machine may do (its unix socket)",
      );
    if (!isAbsolute(m.source)) throw new SpecError(field, `must be an absolute host path, got ${m.source}`);
    let isDir = false;
    try {
      isDir = statSync(m.source).isDirectory();
    } catch {
      throw new SpecError(field, `no such host directory: ${m.source}`);
    }
    if (!isDir) throw new SpecError(field, `${m.source} is not a directory: bind mounts share directories`);
    const stat = m.statVirtualization ?? 'off';
    if (stat === 'off') return m;
    const xattrs = hasUserXattrs(m.source);
    if (!xattrs && stat === 'strict')
      throw new SpecError(
        `mounts.${i}.statVirtualization`,
        `${m.source} is on a filesystem without extended attributes, where guest owners and modes cannot be kept: use relaxed or off`,
      );
    // Relaxed falls back to the host's own metadata; recorded, so later boots do the same.
    return xattrs ? m : { ...m, statVirtualization: 'off' };
  });
  o.volumes.check(resolved);
  return { ...spec, mounts: resolved };
}

/** The shares and guest mounts of a spec whose mounts were prepared. */
export function sandboxMounts(spec: SandboxSpec, volumes: Volumes): SandboxMounts {
  const out: SandboxMounts = { shares: [], disks: [], guest: [] };
  for (const [i, m] of (spec.mounts ?? []).entries()) {
    const restricted = spec.securityProfile === 'restricted';
    const flags = [
      m.readOnly && 'ro',
      m.noexec && 'noexec',
      (m.nosuid || restricted) && 'nosuid',
      (m.nodev || restricted) && 'nodev',
    ].filter((f): f is string => !!f);
    if (m.type === 'tmpfs') {
      out.guest.push({ fstype: 'tmpfs', source: 'tmpfs', target: m.target, flags, data: `size=${m.sizeMib}m,mode=1777` });
      continue;
    }
    const disk =
      m.type === 'disk'
        ? { path: m.source, format: diskFormat(m.source, `mounts.${i}.source`), fstype: m.fstype }
        : m.type === 'volume' && volumes.record(m.source)?.kind === 'disk'
          ? { path: volumes.diskPath(m.source), format: 'raw' as const, fstype: 'ext4' }
          : undefined;
    if (disk) {
      // Found by its serial in the guest: the order of virtio devices is not the kernel's promise.
      const serial = `vmbox-disk${i}`;
      out.disks.push({
        path: disk.path,
        format: disk.format,
        readOnly: m.readOnly,
        serial,
        ...(spec.diskIo ? { throttle: spec.diskIo } : {}),
      });
      out.guest.push({ fstype: 'block', source: serial, target: m.target, flags, ...(disk.fstype ? { data: disk.fstype } : {}) });
      continue;
    }
    const tag = `vmbox${i}`;
    const hostPath = m.type === 'bind' ? m.source : volumes.dataDir(m.source);
    // Checked at create, and again at every start: a host directory can go between the two.
    if (m.type === 'bind' && !existsSync(hostPath)) {
      throw new VmboxError(
        'invalidState',
        `the host directory of ${m.target}, ${hostPath}, is gone: make it again, then start the sandbox`,
      );
    }
    const hostOwners = m.type === 'bind' && (m.statVirtualization ?? 'off') === 'off';
    // Read-only twice: QEMU refuses writes to the export, and the guest mounts it ro.
    // The host's owners (`off`) are QEMU's `none` model: passthrough that does not insist on a chown it
    // cannot make. A jailed QEMU (its own uid, no CAP_CHOWN) then makes the guest's files as that uid.
    out.shares.push({ tag, hostPath, readOnly: m.readOnly, security: hostOwners ? 'none' : 'mapped-xattr' });
    out.guest.push({ fstype: '9p', source: tag, target: m.target, flags, data: NINE_P_OPTIONS });
  }
  return out;
}

/** One disk file a spec uses, by its real path (so two names of one file are one disk): written, or a root's backing. */
export interface DiskUse {
  file: string;
  /** How the error names it: `volume NAME` or the path given. */
  label: string;
  use: 'write' | 'read' | 'root';
}

/** The disk files a spec uses: disk volumes, disk images, and a disk image as its root. */
export function diskUses(spec: SandboxSpec, volumes: Volumes): DiskUse[] {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  const uses: DiskUse[] = (spec.mounts ?? []).flatMap((m): DiskUse[] => {
    const use = m.readOnly ? 'read' : 'write';
    if (m.type === 'disk') return [{ file: real(m.source), label: m.source, use }];
    if (m.type === 'volume' && volumes.record(m.source)?.kind === 'disk')
      return [{ file: real(volumes.diskPath(m.source)), label: `volume ${m.source}`, use }];
    return [];
  });
  if (spec.rootDisk) uses.push({ file: real(spec.rootDisk), label: spec.rootDisk, use: 'root' });
  return uses;
}

/** Whether a spec writes any disk (a removal then shuts the guest down cleanly). */
export const writesDisks = (spec: SandboxSpec, volumes: Volumes) => diskUses(spec, volumes).some((u) => u.use === 'write');

/**
 * One writer per disk file: a read-write mount is refused while another live
 * sandbox writes the file or boots from it, and a root on a file someone
 * writes is refused too (read-only mounts may share a file with a writer).
 */
export function refuseSecondWriter(
  spec: SandboxSpec,
  volumes: Volumes,
  holders: (file: string) => { name: string; use: DiskUse['use'] }[],
): void {
  for (const mine of diskUses(spec, volumes)) {
    if (mine.use === 'read') continue;
    const clash = holders(mine.file).filter((o) => (mine.use === 'write' ? o.use !== 'read' : o.use === 'write'));
    if (!clash.length) continue;
    const names = clash.map((o) => o.name).join(', ');
    const how = clash.some((o) => o.use === 'write') ? 'mounted read-write by' : 'the root disk of';
    throw new VmboxError(
      'invalidState',
      `${mine.label} is ${how} sandbox ${names}: one writer at a time (mount it read-only, or stop ${clash.length > 1 ? 'them' : 'it'} first)`,
    );
  }
}

/** A host disk image's format, as qemu-img reads it: qcow2, raw or vmdk, whole and standing alone. */
export function diskFormat(path: string, field: string): DiskFormat {
  if (!isAbsolute(path)) throw new SpecError(field, `must be an absolute host path, got ${path}`);
  let info: { format?: string; 'backing-filename'?: string; 'format-specific'?: { data?: { extents?: { filename?: string }[] } } };
  try {
    if (!statSync(path).isFile()) throw new SpecError(field, `${path} is not a file: a disk mount takes a disk image`);
    info = JSON.parse(
      execFileSync('qemu-img', ['info', '--output=json', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }),
    );
  } catch (err) {
    if (err instanceof SpecError) throw err;
    const why =
      (err as { code?: string }).code === 'ENOENT'
        ? 'no such file'
        : 'not a disk image qemu-img can read (corrupt, or of an unknown format)';
    throw new SpecError(field, `${path}: ${why}`);
  }
  const format = info.format as DiskFormat;
  if (!DISK_FORMATS.includes(format)) throw new SpecError(field, `${path} is a ${info.format} image: qcow2, raw and vmdk are mounted`);
  // A backing file (or a vmdk extent elsewhere) would hand the guest some other host file.
  const elsewhere =
    info['backing-filename'] ?? info['format-specific']?.data?.extents?.find((e) => e.filename && e.filename !== path)?.filename;
  if (elsewhere) throw new SpecError(field, `${path} reads another file (${elsewhere}): give a standalone image (qemu-img convert)`);
  return format;
}

/**
 * Refuses to save the memory of a sandbox that mounts host directories,
 * volumes or disk images: QEMU cannot save 9p state, and a copy of the memory
 * would hold a disk another sandbox writes.
 */
export function refuseSavingMounts(spec: SandboxSpec, name: string, what: string): void {
  if (!spec.rootDir && !spec.mounts?.some((m) => m.type !== 'tmpfs')) return;
  throw new VmboxError(
    'invalidState',
    `sandbox ${name} mounts host directories or volumes, whose state cannot be saved with its memory: it cannot ${what}; stop it first (a stopped sandbox snapshots its disk)`,
  );
}

/** Whether the host filesystem under `dir` takes user extended attributes (9p's mapped-xattr keeps guest owners there). */
function hasUserXattrs(dir: string): boolean {
  try {
    // Node has no xattr call; the host's Python (there on every machine vmbox sets up) has.
    execFileSync(
      'python3',
      ['-c', 'import os,sys\nd=sys.argv[1]\nos.setxattr(d, "user.vmbox.probe", b"1")\nos.removexattr(d, "user.vmbox.probe")', dir],
      { stdio: 'ignore', timeout: 10_000 },
    );
    return true;
  } catch {
    return false;
  }
}

/** A host disk image as a sandbox's root: checked as a disk mount's is, booted with the base image's config. */
export function rootDiskImage(path: string, hostPaths: boolean): ResolvedImage {
  if (!hostPaths)
    throw new SpecError('rootDisk', "a root disk names a host file, which only clients on the server's machine may do (its unix socket)");
  const format = diskFormat(path, 'rootDisk');
  return { name: `disk:${path}`, rootfsPath: path, format, config: builtinConfig.base as ResolvedImage['config'] };
}

/** The size of an image's disk as the guest sees it (a qcow2's or vmdk's virtual size). */
export function diskBytes(image: ResolvedImage): number {
  if ((image.format ?? 'raw') === 'raw') return statSync(image.rootfsPath).size;
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', image.rootfsPath], { encoding: 'utf8' })) as {
    'virtual-size': number;
  };
  return info['virtual-size'];
}

/** A host directory as a sandbox's root (9p): it must exist; it boots with the base image's config. */
export function rootDirImage(path: string, hostPaths: boolean): ResolvedImage {
  if (!hostPaths)
    throw new SpecError(
      'rootDir',
      "a root directory names a host path, which only clients on the server's machine may do (its unix socket)",
    );
  if (!isAbsolute(path)) throw new SpecError('rootDir', `must be an absolute host path, got ${path}`);
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {}
  if (!isDir) throw new SpecError('rootDir', `no such host directory: ${path}`);
  return { name: `dir:${path}`, rootfsPath: path, config: builtinConfig.base as ResolvedImage['config'] };
}
