import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmboxError } from '../errors.js';
import { paths, projectRoot } from '../paths.js';
import { buildOnce, inputsKey } from './cache.js';
import { buildInitramfs, type CpioEntry } from './cpio.js';
import { progress } from './progress.js';
import { runCommand } from './run-command.js';

const agentDir = () => join(projectRoot, 'agent');

export interface AgentAssets {
  /** initramfs whose /init is the vmbox agent. */
  initrd: string;
  /** initramfs whose /init powers off at once: the boot floor. */
  bareInitrd: string;
}

export function agentCacheDir(): string {
  const files = readdirSync(agentDir())
    .filter((f) => /\.(c|h)$/.test(f))
    .sort();
  return join(paths.cache(), 'agent', inputsKey(files.map((f) => ({ file: join(agentDir(), f) }))));
}

const skeleton: CpioEntry[] = [
  { name: 'dev', mode: 0o40755 },
  { name: 'dev/console', mode: 0o20600, rdev: { major: 5, minor: 1 } },
  { name: 'proc', mode: 0o40755 },
  { name: 'sys', mode: 0o40755 },
  { name: 'newroot', mode: 0o40755 },
];

/**
 * musl's compiler sees only musl's headers; the agent's netfilter code needs the
 * kernel's own (linux-libc-dev, which libc6-dev brings). They are libc-neutral, so
 * a folder linking just those three trees is safe to put on the include path.
 */
export function kernelHeaders(tmp: string): string {
  const dir = join(tmp, 'kernel-headers');
  if (existsSync(join(dir, 'linux'))) return dir;
  mkdirSync(dir, { recursive: true });
  const multiarch = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const trees: Array<[string, string]> = [
    ['linux', '/usr/include/linux'],
    ['asm-generic', '/usr/include/asm-generic'],
    ['asm', `/usr/include/${multiarch}/asm`],
  ];
  for (const [name, target] of trees) {
    if (!existsSync(target))
      throw new VmboxError('hostSetup', `${target} is missing: install linux-libc-dev (apt-get install linux-libc-dev)`);
    symlinkSync(target, join(dir, name));
  }
  return dir;
}

/** Compiles the agent (static, musl) and packs the two initramfs archives. */
export async function ensureAgent(): Promise<AgentAssets> {
  const dir = agentCacheDir();
  const assets = { initrd: join(dir, 'initramfs.cpio.gz'), bareInitrd: join(dir, 'bare-initramfs.cpio.gz') };
  if (existsSync(assets.initrd)) return assets;
  progress('building the guest agent');
  mkdirSync(join(paths.cache(), 'agent'), { recursive: true });
  try {
    await buildOnce(dir, 'initramfs.cpio.gz', async (tmp) => {
      mkdirSync(tmp, { recursive: true });
      const cc = process.env.VMBOX_AGENT_CC || 'musl-gcc';
      const flags = ['-O2', '-Wall', '-std=gnu11', '-D_GNU_SOURCE', '-static', '-s', '-isystem', kernelHeaders(tmp)];
      const sources = readdirSync(agentDir())
        .filter((f) => f.endsWith('.c') && f !== 'bare-init.c')
        .map((f) => join(agentDir(), f));
      await runCommand(cc, [...flags, '-o', join(tmp, 'vmbox-agent'), ...sources]);
      await runCommand(cc, [...flags, '-o', join(tmp, 'bare-init'), join(agentDir(), 'bare-init.c')]);
      const init = (file: string): CpioEntry => ({ name: 'init', mode: 0o100755, data: readFileSync(join(tmp, file)) });
      writeFileSync(join(tmp, 'initramfs.cpio.gz'), buildInitramfs([...skeleton, init('vmbox-agent')]));
      writeFileSync(join(tmp, 'bare-initramfs.cpio.gz'), buildInitramfs([...skeleton, init('bare-init')]));
    });
  } catch (err) {
    throw new VmboxError('hostSetup', `the guest agent did not build: ${(err as Error).message}`, { cause: err });
  }
  return assets;
}
