import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { agentCacheDir } from '../setup/agent.js';
import { baseImageDir } from '../setup/base-image.js';
import { e2bBaseDisk } from '../setup/e2b-base-image.js';
import { kernelCacheDir, kernelSource } from '../setup/kernel.js';
import { detectAccelerator } from '../vmm/accel.js';
import { jailLayers } from '../vmm/qemu/jail.js';
import { findExecutable, qemuBinary } from '../vmm/qemu/provider.js';

/** `vmbox doctor`: what this host can do and what is cached. Builds nothing. */
export function doctorCommand(): Command {
  return new Command('doctor')
    .description('check the host: accelerator, QEMU, kernel, agent and image caches, and each layer of the QEMU jail')
    .action(async () => {
      const rows: Array<[string, string]> = [];
      let qemu = 'not installed (run ./vmbox once as root)';
      try {
        qemu = execFileSync(qemuBinary(), ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
      } catch {}
      rows.push(['qemu', qemu]);
      const kernel = join(kernelCacheDir(), 'vmlinux');
      const agent = agentCacheDir();
      rows.push(['kernel', existsSync(kernel) ? `built: ${kernel}` : `not built yet (from ${kernelSource()})`]);
      rows.push(['agent', existsSync(join(agent, 'initramfs.cpio.gz')) ? `built: ${agent}` : 'not built yet']);
      rows.push(['image base', existsSync(join(baseImageDir(), 'rootfs.ext4')) ? `built: ${baseImageDir()}` : 'not built yet']);
      rows.push([
        'image e2b-base',
        existsSync(e2bBaseDisk()) ? `built: ${e2bBaseDisk()}` : 'not built yet (built on first use, about 30 s)',
      ]);
      if (existsSync(kernel) && existsSync(join(agent, 'bare-initramfs.cpio.gz'))) {
        const v = await detectAccelerator({ kernelPath: kernel, bareInitrd: join(agent, 'bare-initramfs.cpio.gz') });
        rows.push(['accelerator', `${v.accel}: ${v.reason}`]);
      } else {
        rows.push(['accelerator', 'not probed yet (needs the kernel and agent; run any vmbox run)']);
      }
      for (const [layer, state] of jailLayers(findExecutable(qemuBinary()))) {
        rows.push([`jail ${layer}`, `${state.on ? 'on' : 'off'}: ${state.detail}`]);
      }
      const width = Math.max(...rows.map(([k]) => k.length));
      for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
    });
}
