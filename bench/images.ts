/**
 * Image numbers: pull + disk build of a ~100 MB image from a loopback registry,
 * against skopeo copy + umoci unpack of the same image; and whether a second
 * sandbox of a pulled image starts as fast as the first.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pullImage } from '../src/images/pull.js';
import { ensureRootfs } from '../src/images/rootfs.js';
import { type LayerEntry, pushImage } from '../test/fixtures/image-writer.js';
import { startRegistry } from '../test/fixtures/registry.js';
import { type TestSandbox, testRuntime } from '../test/fixtures/runtime.js';
import { median, type Row } from './stats.js';

const RUNS = Number(process.env.BENCH_IMAGE_RUNS || 5);

function bigImageLayers(): Array<{ entries: LayerEntry[] }> {
  const userland: LayerEntry[] = [
    { name: 'bin/busybox', body: readFileSync('/bin/busybox'), mode: 0o755 },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    { name: 'bin/true', type: 'symlink', linkname: 'busybox' },
  ];
  // Four layers of 24 files of 1 MiB: incompressible, like binaries and wheels.
  const data = Array.from({ length: 4 }, (_, l) => ({
    entries: Array.from({ length: 24 }, (_, i) => ({ name: `data/l${l}/f${i}`, body: randomBytes(1024 * 1024) })),
  }));
  return [{ entries: userland }, ...data];
}

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export async function imageBench(): Promise<Row[]> {
  const registry = await startRegistry();
  const home = process.env.VMBOX_HOME;
  try {
    const ref = `${registry.host}/bench/big:1`;
    await pushImage(registry.url, 'bench/big', '1', { layers: bigImageLayers() });
    const vmbox: number[] = [];
    const tools: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Each run starts from an empty store, in a home of its own.
      const scratch = mkdtempSync(join(tmpdir(), 'vmbox-bench-home-'));
      process.env.VMBOX_HOME = scratch;
      vmbox.push(
        await timed(async () => {
          const image = await pullImage(ref, { insecure: [registry.host] });
          await ensureRootfs(image);
        }),
      );
      tools.push(
        await timed(() => {
          const copy = spawnSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${scratch}/layout:1`]);
          if (copy.status !== 0) throw new Error(`skopeo: ${copy.stderr}`);
          const unpack = spawnSync('umoci', ['unpack', '--image', `${scratch}/layout:1`, `${scratch}/bundle`]);
          if (unpack.status !== 0) throw new Error(`umoci: ${unpack.stderr}`);
        }),
      );
      process.env.VMBOX_HOME = home;
      rmSync(scratch, { recursive: true, force: true });
    }
    if (home === undefined) delete process.env.VMBOX_HOME;

    // Second and later sandboxes of a pulled image: no image work, same start time.
    await pullImage(ref, { insecure: [registry.host] }).then(ensureRootfs);
    const first: number[] = [];
    const second: number[] = [];
    const rt = await testRuntime({ pull: { pull: 'never' } });
    for (let i = 0; i < RUNS; i++) {
      let a: TestSandbox | undefined;
      let b: TestSandbox | undefined;
      const create = () => rt.create({ image: ref });
      first.push(
        await timed(async () => {
          a = await create();
        }),
      );
      second.push(
        await timed(async () => {
          b = await create();
        }),
      );
      await a?.remove();
      await b?.remove();
    }
    await rt.close();
    const ratio = median(vmbox) / median(tools);
    return [
      { metric: 'pull + disk build, 100 MB image', value: median(vmbox) / 1000, unit: 's', note: `${RUNS} runs, loopback registry` },
      { metric: '  skopeo copy + umoci unpack', value: median(tools) / 1000, unit: 's', note: 'same image, same machine' },
      { metric: '  vmbox / (skopeo + umoci)', value: ratio, unit: 'x', target: '<= 1' },
      { metric: 'sandbox start, image cached', value: median(first), unit: 'ms', note: `${RUNS} runs` },
      { metric: 'another sandbox of it meanwhile', value: median(second), unit: 'ms', target: 'within 5%' },
      { metric: '  second / first', value: median(second) / median(first), unit: 'x' },
    ];
  } finally {
    process.env.VMBOX_HOME = home;
    if (home === undefined) delete process.env.VMBOX_HOME;
    await registry.stop();
  }
}
