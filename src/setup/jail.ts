import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { paths, projectRoot } from '../paths.js';
import { jailHost } from '../vmm/qemu/jail.js';
import { kernelHeaders } from './agent.js';
import { buildOnce, inputsKey } from './cache.js';
import { progress } from './progress.js';
import { runCommand } from './run-command.js';

const source = () => join(projectRoot, 'jail', 'vmbox-jail.c');

/**
 * The launcher that jails each QEMU (jail/vmbox-jail.c), compiled once into the
 * cache like the agent: static (musl), as it runs on through a root it builds
 * itself. Undefined where the host cannot jail (not root, not Linux, turned off).
 */
export async function ensureJailLauncher(): Promise<string | undefined> {
  if (!jailHost().enabled.on) return undefined;
  const dir = join(paths.cache(), 'jail', inputsKey([{ file: source() }]));
  const launcher = join(dir, 'vmbox-jail');
  if (existsSync(launcher)) return launcher;
  progress('building the QEMU jail launcher');
  mkdirSync(join(paths.cache(), 'jail'), { recursive: true });
  try {
    await buildOnce(dir, 'vmbox-jail', async (tmp) => {
      mkdirSync(tmp, { recursive: true });
      const cc = process.env.VMBOX_AGENT_CC || 'musl-gcc';
      await runCommand(cc, [
        '-O2',
        '-Wall',
        '-std=gnu11',
        '-static',
        '-s',
        '-isystem',
        kernelHeaders(tmp),
        '-o',
        join(tmp, 'vmbox-jail'),
        source(),
      ]);
    });
  } catch (err) {
    throw new VmboxError('hostSetup', `the QEMU jail launcher did not build: ${(err as Error).message}`, { cause: err });
  }
  return launcher;
}
