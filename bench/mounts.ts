/**
 * Bind mounts against the guest's own disk, side by side on one sandbox:
 * 100 MiB written and read back sequentially, and a tarball of 10,000 small
 * files unpacked, on each (rounds alternate).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandbox } from '../src/sdk/sandbox.js';
import { isolatedHome } from '../test/fixtures/home.js';
import { median, type Row } from './stats.js';

const MIB = 100;

export async function mountBench(runs: number): Promise<Row[]> {
  const home = isolatedHome();
  const host = mkdtempSync(join(tmpdir(), 'vmbox-bench-bind-'));
  const saved = process.env.VMBOX_HOME;
  process.env.VMBOX_HOME = home.home;
  try {
    // SYS_ADMIN: the guest's page cache is dropped between runs.
    const sbx = await Sandbox.create({ memoryMib: 1024, capAdd: ['SYS_ADMIN'], mounts: [{ type: 'bind', source: host, target: '/bind' }] });
    const sh = async (script: string) => (await sbx.commands.run(['sh', '-c', script], { timeoutMs: 600_000 })).stdout.trim();
    // The tarball is made once in the guest (10,000 files of 1 KiB in 100 directories).
    await sh(
      'mkdir -p /root/src && cd /root/src && for d in $(seq 100); do mkdir d$d; for f in $(seq 100); do head -c 1024 /dev/urandom > d$d/f$f; done; done && tar cf /root/small.tar -C /root/src . && rm -rf /root/src',
    );
    /** Seconds a shell snippet takes in the guest, by its own clock (10 ms steps): no round trip counted. */
    const timed = async (script: string) =>
      Number(await sh(`s=$(cut -d' ' -f1 /proc/uptime); ${script}; e=$(cut -d' ' -f1 /proc/uptime); echo "$e $s" | awk '{print $1 - $2}'`));
    const on = { bind: '/bind', disk: '/root/bench' };
    const results: Record<'bind' | 'disk', { write: number[]; read: number[]; untar: number[] }> = {
      bind: { write: [], read: [], untar: [] },
      disk: { write: [], read: [], untar: [] },
    };
    for (let i = 0; i < runs; i++) {
      for (const where of ['bind', 'disk'] as const) {
        const dir = on[where];
        await sh(`mkdir -p ${dir} && rm -rf ${dir}/*`);
        results[where].write.push(MIB / (await timed(`dd if=/dev/zero of=${dir}/big bs=1M count=${MIB} conv=fsync 2>/dev/null`)));
        // Dropped from the guest's cache, so the read comes through the mount (9p) or the disk.
        await sh('sync; echo 3 > /proc/sys/vm/drop_caches');
        results[where].read.push(MIB / (await timed(`dd if=${dir}/big of=/dev/null bs=1M 2>/dev/null`)));
        await sh(`rm -f ${dir}/big; mkdir -p ${dir}/untar`);
        results[where].untar.push(await timed(`tar xf /root/small.tar -C ${dir}/untar && sync`));
      }
    }
    await sbx.kill();
    const mbs = (mibs: number) => (mibs * 1024 * 1024) / 1e6;
    const row = (metric: string, where: 'bind' | 'disk', kind: 'write' | 'read', target?: string): Row => ({
      metric,
      value: mbs(median(results[where][kind])),
      unit: 'MB/s',
      ...(target ? { target } : {}),
      note: `${runs} runs, ${MIB} MiB, dd`,
    });
    const untarRatio = median(results.bind.untar) / median(results.disk.untar);
    return [
      row('bind mount: sequential write', 'bind', 'write', '>= 100'),
      row('  guest disk: sequential write', 'disk', 'write'),
      row('bind mount: sequential read', 'bind', 'read', '>= 100'),
      row('  guest disk: sequential read', 'disk', 'read'),
      { metric: 'bind mount: untar 10,000 files of 1 KiB', value: median(results.bind.untar), unit: 's', note: `${runs} runs` },
      { metric: '  guest disk: the same', value: median(results.disk.untar), unit: 's', note: `${runs} runs` },
      { metric: '  bind / disk', value: untarRatio, unit: 'x', target: '<= 3' },
    ];
  } finally {
    if (saved === undefined) delete process.env.VMBOX_HOME;
    else process.env.VMBOX_HOME = saved;
    await home.cleanup();
    rmSync(host, { recursive: true, force: true });
  }
}
