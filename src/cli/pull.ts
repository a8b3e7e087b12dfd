import { Command } from 'commander';
import type { Descriptor } from '../images/media.js';
import { pullImage } from '../images/pull.js';
import { parseReference } from '../images/reference.js';
import { humanBytes } from './format.js';

export interface PullFlags {
  platform?: string;
  insecure?: boolean;
}

/** Per-layer progress on stderr: one line per layer when it completes, a live line on a terminal. */
export function pullProgress(): {
  onManifest: (l: Descriptor[]) => void;
  onProgress: (e: { digest: string; received: number; total: number; done?: boolean }) => void;
} {
  const tty = process.stderr.isTTY;
  const seen = new Set<string>();
  let last = 0;
  return {
    onManifest: (layers) => process.stderr.write(`pulling ${layers.length} layer${layers.length === 1 ? '' : 's'}\n`),
    onProgress: (e) => {
      const short = e.digest.slice(7, 19);
      if (e.done) {
        if (seen.has(e.digest)) return;
        seen.add(e.digest);
        process.stderr.write(`${tty ? '\r\x1b[K' : ''}${short}: done ${humanBytes(e.total)}\n`);
      } else if (tty && Date.now() - last > 100) {
        last = Date.now();
        process.stderr.write(`\r\x1b[K${short}: ${humanBytes(e.received)} / ${humanBytes(e.total)}`);
      }
    },
  };
}

/** `--insecure` applies to the registry the reference names (none for a built-in image). */
export function insecureFor(reference: string, insecure?: boolean): string[] {
  if (!insecure) return [];
  try {
    return [parseReference(reference).registry];
  } catch {
    return [];
  }
}

/** `vmbox pull REF`: fetch an image into the local store. */
export function pullCommand(): Command {
  return new Command('pull')
    .description('pull an image from a registry')
    .argument('<reference>', 'image reference, e.g. alpine:3.20')
    .option('--platform <os/arch>', 'platform to pull from a multi-platform image')
    .option('--insecure', 'talk to this registry over plain HTTP (for loopback registries)')
    .action(async (reference: string, flags: PullFlags) => {
      const image = await pullImage(reference, {
        policy: 'always',
        platform: flags.platform,
        insecure: insecureFor(reference, flags.insecure),
        ...pullProgress(),
      });
      process.stdout.write(`${image.reference}\ndigest: ${image.manifestDigest}\n`);
    });
}
