import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { baseImageDir, ensureBaseImage } from '../setup/base-image.js';
import { e2bBaseDisk, ensureE2bBaseImage } from '../setup/e2b-base-image.js';
import { imageConfig, type PullOptions, pullImage } from './pull.js';
import { parseReference } from './reference.js';
import { ensureRootfs } from './rootfs.js';

/** What a sandbox needs from an image: its disk and the config it runs with. */
export interface ResolvedImage {
  /** The name the sandbox was asked for, normalised (`docker.io/library/alpine:3.20`, or `base`). */
  name: string;
  /** The manifest a pulled or imported image was flattened from: its blobs are kept while a sandbox records it. */
  digest?: string;
  rootfsPath: string;
  /** The disk's format: raw for images vmbox flattens; a host disk image as root may be qcow2 or vmdk. */
  format?: 'raw' | 'qcow2' | 'vmdk';
  config: {
    env: string[];
    workingDir: string;
    user: string;
    entrypoint: string[];
    cmd: string[];
  };
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The config of each built-in image. No default command: `vmbox run --image base` wants one. */
export const builtinConfig: Record<string, ResolvedImage['config']> = {
  base: { env: [DEFAULT_PATH], workingDir: '/', user: 'root', entrypoint: [], cmd: [] },
  // As E2B's `base` template: commands run as `user` in its home. The agent sets
  // HOME and USER from the image's /etc/passwd, so only PATH is given.
  'e2b-base': { env: [DEFAULT_PATH], workingDir: '/home/user', user: 'user', entrypoint: [], cmd: [] },
};

const builtin: Record<string, () => Promise<ResolvedImage>> = {
  base: async () => ({ name: 'base', rootfsPath: await ensureBaseImage(), config: builtinConfig.base as ResolvedImage['config'] }),
  'e2b-base': async () => ({
    name: 'e2b-base',
    rootfsPath: await ensureE2bBaseImage(),
    config: builtinConfig['e2b-base'] as ResolvedImage['config'],
  }),
};

/** Where each built-in image's disk is, built or not: a look that builds nothing. */
const builtinDisks: Record<string, () => string> = {
  base: () => join(baseImageDir(), 'rootfs.ext4'),
  'e2b-base': e2bBaseDisk,
};

export function builtinDisk(name: string): string | undefined {
  return Object.hasOwn(builtinDisks, name) ? builtinDisks[name]?.() : undefined;
}

/** Whether `name` is a built-in image (own keys only: `constructor` is an image reference). */
export function isBuiltin(name: string): boolean {
  return Object.hasOwn(builtin, name);
}

export function builtinImages(): string[] {
  return Object.keys(builtin);
}

/** Throws `imageNotFound` for a name that is neither a built-in image nor an image reference. */
export function checkImageName(name: string): void {
  if (isBuiltin(name)) return;
  try {
    parseReference(name);
  } catch (err) {
    throw new VmboxError(
      'imageNotFound',
      `unknown image '${name}': not a built-in image (${builtinImages().join(', ')}) nor an image reference: ${(err as Error).message.replace(/^invalid image reference '.*?': /, '')}`,
      { cause: err },
    );
  }
}

/** A built-in image by name, or any OCI reference, pulled per the policy and flattened to a disk. */
export async function resolveImage(name: string, opts: PullOptions = {}): Promise<ResolvedImage> {
  const make = isBuiltin(name) ? builtin[name] : undefined;
  if (make) return make();
  checkImageName(name);
  const image = await pullImage(name, opts);
  const c = imageConfig(image).config ?? {};
  const env = c.Env ?? [];
  return {
    name: image.reference,
    digest: image.manifestDigest,
    rootfsPath: await ensureRootfs(image),
    config: {
      env: env.some((e) => e.startsWith('PATH=')) ? env : [DEFAULT_PATH, ...env],
      workingDir: c.WorkingDir || '/',
      user: c.User || '0', // Docker's default: uid 0, which needs no /etc/passwd
      entrypoint: c.Entrypoint ?? [],
      cmd: c.Cmd ?? [],
    },
  };
}
