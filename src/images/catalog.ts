import { VmboxError } from '../errors.js';
import { ensureBaseImage } from '../setup/base-image.js';

/** What a sandbox needs from an image: its disk and the config it runs with. */
export interface ResolvedImage {
  name: string;
  rootfsPath: string;
  config: {
    env: string[];
    workingDir: string;
    user: string;
    entrypoint: string[];
    cmd: string[];
  };
}

const builtin: Record<string, () => Promise<ResolvedImage>> = {
  base: async () => ({
    name: 'base',
    rootfsPath: await ensureBaseImage(),
    config: {
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      workingDir: '/',
      user: 'root',
      entrypoint: [],
      cmd: ['/bin/sh'],
    },
  }),
};

export function knownImages(): string[] {
  return Object.keys(builtin);
}

export async function resolveImage(name: string): Promise<ResolvedImage> {
  const make = builtin[name];
  if (!make) throw new VmboxError('imageNotFound', `unknown image '${name}': available images are ${knownImages().join(', ')}`);
  return make();
}
