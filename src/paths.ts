import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of everything vmbox writes: `$VMBOX_HOME`, default `~/.vmbox`. */
export function vmboxHome(): string {
  return resolve(process.env.VMBOX_HOME || join(homedir(), '.vmbox'));
}

export const paths = {
  cache: () => join(vmboxHome(), 'cache'),
  images: () => join(vmboxHome(), 'images'),
  sandboxes: () => join(vmboxHome(), 'sandboxes'),
  sandbox: (id: string) => join(vmboxHome(), 'sandboxes', id),
};

/** The checkout or package root (holds `kernel/` and `agent/`), from this file's location. */
export const projectRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
