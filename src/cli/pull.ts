import { Command } from 'commander';
import { type ImageDetail, Images, type PullPolicy, type PullProgress } from '../sdk/images.js';
import { connectOptions } from './client.js';
import { humanBytes } from './format.js';

export interface PullFlags {
  pull?: PullPolicy;
  platform?: string;
  insecure?: boolean;
}

/** Per-layer progress on stderr: one line per layer when it completes, a live line on a terminal. */
export function pullProgress(): (e: PullProgress) => void {
  const tty = process.stderr.isTTY;
  const seen = new Set<string>();
  let last = 0;
  return (e) => {
    if (e.type === 'manifest') {
      process.stderr.write(`pulling ${e.layers.length} layer${e.layers.length === 1 ? '' : 's'}\n`);
      return;
    }
    const short = e.digest.slice(7, 19);
    if (e.done) {
      if (seen.has(e.digest)) return;
      seen.add(e.digest);
      process.stderr.write(`${tty ? '\r\x1b[K' : ''}${short}: done ${humanBytes(e.total)}\n`);
    } else if (tty && Date.now() - last > 100) {
      last = Date.now();
      process.stderr.write(`\r\x1b[K${short}: ${humanBytes(e.received)} / ${humanBytes(e.total)}`);
    }
  };
}

/** Pulls on the server per the flags, progress on stderr: what `run` and `create` do before creating. */
export function pullFor(image: string, flags: PullFlags): Promise<ImageDetail> {
  return Images.pull(image, {
    policy: flags.pull,
    platform: flags.platform,
    insecure: flags.insecure,
    onProgress: pullProgress(),
    ...connectOptions,
  });
}

/** `vmbox pull REF`: fetch an image onto the server. */
export function pullCommand(): Command {
  return new Command('pull')
    .description('pull an image from a registry')
    .argument('<reference>', 'image reference, e.g. alpine:3.20')
    .option('--platform <os/arch>', 'platform to pull from a multi-platform image')
    .option('--insecure', 'talk to this registry over plain HTTP (for loopback registries)')
    .action(async (reference: string, flags: PullFlags) => {
      const image = await pullFor(reference, { ...flags, pull: 'always' });
      process.stdout.write(`${image.reference}\n${image.digest ? `digest: ${image.digest}\n` : ''}`);
    });
}
