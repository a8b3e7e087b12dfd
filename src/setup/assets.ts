import { ensureHome } from '../paths.js';
import { type AccelVerdict, detectAccelerator } from '../vmm/accel.js';
import { ensureAgent } from './agent.js';
import { ensureBaseImage } from './base-image.js';
import { ensureKernel } from './kernel.js';

export interface Assets {
  kernelPath: string;
  initrd: string;
  bareInitrd: string;
  accel: AccelVerdict;
}

let memo: Promise<Assets> | undefined;

/** Everything a VM needs, built once and cached; a quick check once built. */
export function ensureAssets(): Promise<Assets> {
  memo ??= (async () => {
    ensureHome();
    const kernelPath = await ensureKernel();
    const agent = await ensureAgent();
    const accel = await detectAccelerator({ kernelPath, bareInitrd: agent.bareInitrd });
    return { kernelPath, ...agent, accel };
  })();
  memo.catch(() => {
    memo = undefined;
  });
  return memo;
}

/** The full set-up, including the built-in image: what `./vmbox` and `npm test` run first. */
export async function ensureAll(): Promise<Assets> {
  const assets = await ensureAssets();
  await ensureBaseImage();
  return assets;
}
