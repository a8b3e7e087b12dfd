import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VmboxError } from '../../src/errors.js';
import { sharedRuntime, withSandbox } from './helpers.js';

/** Size of the guest's root file system as `df` reports it, in MiB. */
async function rootMib(run: (argv: string[]) => Promise<{ exitCode: number; stdout: string }>): Promise<number> {
  const r = await run(['df', '-k', '/']);
  assert.equal(r.exitCode, 0);
  const kib = Number(r.stdout.trim().split('\n')[1]?.split(/\s+/)[1]);
  assert.ok(kib > 0, `df printed ${r.stdout}`);
  return kib / 1024;
}

describe('disk size', () => {
  const rt = sharedRuntime();
  it('grows the root file system to the requested disk (diskMib)', async () => {
    await withSandbox(rt(), { diskMib: 4096 }, async (s) => {
      const mib = await rootMib((argv) => s.run(argv));
      // ext4 keeps a few percent for inode tables and the journal; the image's own disk is 2048 MiB.
      assert.ok(mib > 3800 && mib <= 4096, `df shows ${mib} MiB for a 4096 MiB disk`);
      // Blocks past the image's 2 GiB are there to be had (fallocate takes them without writing them).
      const w = await s.run(['sh', '-c', 'fallocate -l 3000M /big 2>&1 && rm /big']);
      assert.equal(w.exitCode, 0, `allocating 3000 MiB failed: ${w.stdout}`);
    });
  });

  it("keeps the image's size by default", async () => {
    await withSandbox(rt(), {}, async (s) => {
      const mib = await rootMib((argv) => s.run(argv));
      assert.ok(mib > 1800 && mib <= 2048, `df shows ${mib} MiB for the base image's 2048 MiB disk`);
    });
  });

  it("refuses a disk smaller than the image's, saying the smallest it takes", async () => {
    await assert.rejects(
      withSandbox(rt(), { diskMib: 1024 }, async () => {}),
      (err: unknown) =>
        err instanceof VmboxError && err.code === 'invalidSpec' && /diskMib: must be at least 2048 MiB .*got 1024/.test(err.message),
    );
  });
});
