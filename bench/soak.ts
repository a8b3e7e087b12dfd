import { isolatedHome } from '../test/fixtures/home.js';
import { soak } from '../test/fixtures/soak.js';
import type { Row } from './stats.js';

/**
 * The full soak (the tests run it short): 200 sandboxes created and removed one
 * after another, then 10,000 execs from 8 concurrent clients; the server's RSS,
 * descriptors and the disk under the home before and after.
 */
export async function soakBench(): Promise<Row[]> {
  const home = isolatedHome();
  const saved = { home: process.env.VMBOX_HOME, socket: process.env.VMBOX_SOCKET };
  process.env.VMBOX_HOME = home.home;
  delete process.env.VMBOX_SOCKET;
  try {
    const f = await soak(home, {
      sandboxes: Number(process.env.SOAK_SANDBOXES || 200),
      execs: Number(process.env.SOAK_EXECS || 10_000),
      clients: 8,
    });
    const note = `${f.sandboxes} sandboxes, ${f.execs} execs / ${f.clients} clients, ${f.failures} failures, ${f.seconds.toFixed(0)} s`;
    return [
      {
        metric: 'soak: server RSS before → after',
        value: f.after.rssMiB - f.before.rssMiB,
        unit: 'MiB',
        note: `${f.before.rssMiB.toFixed(0)} → ${f.after.rssMiB.toFixed(0)} MiB; ${note}`,
      },
      {
        metric: 'soak: server descriptors before → after',
        value: f.after.fds - f.before.fds,
        unit: 'fds',
        note: `${f.before.fds} → ${f.after.fds}`,
      },
      {
        metric: 'soak: disk under the home before → after',
        value: (f.after.diskBytes - f.before.diskBytes) / 1024,
        unit: 'KiB',
        note: `${(f.before.diskBytes / 1024).toFixed(0)} → ${(f.after.diskBytes / 1024).toFixed(0)} KiB (caches and the server log aside)`,
      },
      { metric: 'soak: failures', value: f.failures, unit: '', target: '0' },
    ];
  } finally {
    await home.cleanup();
    process.env.VMBOX_HOME = saved.home;
    if (saved.socket !== undefined) process.env.VMBOX_SOCKET = saved.socket;
  }
}
