import { ensureHome, vmboxHome } from '../paths.js';
import { type AccelVerdict, detectAccelerator } from '../vmm/accel.js';
import { ensureAgent } from './agent.js';
import { ensureBaseImage } from './base-image.js';
import { ensureJailLauncher } from './jail.js';
import { ensureKernel } from './kernel.js';

export interface Assets {
  kernelPath: string;
  initrd: string;
  bareInitrd: string;
  accel: AccelVerdict;
  /** The QEMU jail launcher; absent where the host cannot jail QEMU. */
  jailLauncher?: string;
}

/** By home: the paths it gives are under `$VMBOX_HOME/cache`, which a process may change (tests do). */
const memo = new Map<string, Promise<Assets>>();

/** Everything a VM needs, built once and cached; a quick check once built. */
export function ensureAssets(): Promise<Assets> {
  const home = vmboxHome();
  let assets = memo.get(home);
  if (assets) return assets;
  assets = (async () => {
    ensureHome();
    const kernelPath = await ensureKernel();
    const agent = await ensureAgent();
    const accel = await detectAccelerator({ kernelPath, bareInitrd: agent.bareInitrd });
    const jailLauncher = await ensureJailLauncher();
    return { kernelPath, ...agent, accel, ...(jailLauncher ? { jailLauncher } : {}) };
  })();
  memo.set(home, assets);
  assets.catch(() => memo.delete(home));
  return assets;
}

/** The full set-up, including the built-in image: what `./vmbox` and `npm test` run first. */
export async function ensureAll(): Promise<Assets> {
  const assets = await ensureAssets();
  await ensureBaseImage();
  return assets;
}
