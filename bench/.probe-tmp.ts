import { readFileSync } from 'node:fs';
import { Sandbox } from '../src/sdk/sandbox.js';
import { Snapshots, Templates } from '../src/sdk/snapshots.js';
import { isolatedHome } from '../test/fixtures/home.js';
const home = isolatedHome();
process.env.VMBOX_HOME = home.home;
const rss = (pid: number) => { const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'); return ['Rss', 'Pss', 'Private_Dirty', 'Shared_Clean', 'Private_Clean'].map(k => `${k}=${(Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1]) / 1024).toFixed(0)}`).join(' '); };
try {
  await Sandbox.list();
  await Templates.warm('base', { memoryMib: 512 });
  for (const warm of [true, false]) {
    const s = await Sandbox.create({ memoryMib: 512, ...(warm ? {} : { warm: false }) });
    await s.commands.run('true');
    const pid = (await s.getInfo()).pid!;
    console.log(warm ? 'warm' : 'cold', 'before', rss(pid));
    for (let k = 0; k < 3; k++) {
      const snap = await s.snapshot({ name: `x${k}` });
      console.log('  snap', k, snap.timing, 'size MiB', (snap.sizeBytes / 1048576).toFixed(0), rss(pid));
      await Snapshots.remove(`x${k}`);
    }
    await s.kill();
  }
} finally {
  await home.cleanup();
}
