/**
 * Snapshots, fork, warm start and pause, measured side by side in one run on a
 * home of its own (its own server, template and snapshots), through the SDK as
 * a user calls it. Every start is timed to its first command's result, since
 * a sandbox is of use only once its agent runs commands; the sandboxes and
 * snapshots are removed untimed after each measurement. Knobs for small trial
 * runs: BENCH_CONCURRENT, BENCH_COLD_CONCURRENT, BENCH_IDLE.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox } from '../src/sdk/sandbox.js';
import { Snapshots, Templates } from '../src/sdk/snapshots.js';
import { processMetrics } from '../src/vmm/qemu/provider.js';
import { isolatedHome } from '../test/fixtures/home.js';
import { median, percentile, type Row } from './stats.js';

const MIB = 1024 * 1024;
/** Every sandbox here has the issue's shape: base image, 512 MiB. */
const MEMORY_MIB = 512;
const CONCURRENT = Number(process.env.BENCH_CONCURRENT || 20);
/** Cold boots are CPU-bound under TCG: 20 at once on 2 cores measures the queue, not vmbox. */
const COLD_CONCURRENT = Number(process.env.BENCH_COLD_CONCURRENT || 10);
const IDLE = Number(process.env.BENCH_IDLE || 50);
const IDLE_COLD = 3;
const FORK_WIDE = 10;
/** Written to the fork source's /dev/shm so its memory has pages a copy must carry. */
const SOURCE_FILL_MB = 50;

export async function snapshotBench(runs: number): Promise<Row[]> {
  warnIfStaleBundle();
  const home = isolatedHome();
  const saved = process.env.VMBOX_HOME;
  process.env.VMBOX_HOME = home.home;
  const owned = new Owned();
  try {
    await Sandbox.list(); // starts the server
    const t = performance.now();
    const template = await Templates.warm('base', { memoryMib: MEMORY_MIB });
    const rows: Row[] = [
      {
        metric: `template of base, ${MEMORY_MIB} MiB (made once)`,
        value: performance.now() - t,
        unit: 'ms',
        note: `its boot ${template.bootMs} ms`,
      },
    ];
    rows.push(...(await warmAgainstCold(runs, owned)));
    rows.push(...(await concurrentCreates(owned)));
    const source = await busySandbox('source', owned);
    rows.push(...(await forks(source, runs, owned)));
    rows.push(...(await snapshots(source, runs, owned)));
    await owned.kill(source);
    rows.push(...(await pauseResume(await busySandbox('paused', owned), runs, owned)));
    rows.push(...(await idleMemory(owned)));
    return rows;
  } finally {
    await owned.cleanup();
    if (saved === undefined) delete process.env.VMBOX_HOME;
    else process.env.VMBOX_HOME = saved;
    await home.cleanup();
  }
}

/**
 * The server the SDK starts runs dist/vmbox.mjs when it exists, not src/: a
 * bundle older than the sources would time code that is no longer there.
 */
function warnIfStaleBundle(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  let built: number;
  try {
    built = statSync(join(root, 'dist', 'vmbox.mjs')).mtimeMs;
  } catch {
    return; // no bundle: the server runs from src/ through tsx
  }
  const src = join(root, 'src');
  const stale = readdirSync(src, { recursive: true, encoding: 'utf8' }).some(
    (f) => f.endsWith('.ts') && statSync(join(src, f)).mtimeMs > built,
  );
  if (stale) console.warn('warning: src/ changed since dist/vmbox.mjs was built, and the server runs the bundle: npm run build first\n');
}

/** What the bench made and has not removed yet, removed in `finally` whatever failed. */
class Owned {
  private readonly sandboxes = new Set<Sandbox>();
  private readonly snapshots = new Set<string>();

  add(sbx: Sandbox): Sandbox {
    this.sandboxes.add(sbx);
    return sbx;
  }

  addSnapshot(name: string): void {
    this.snapshots.add(name);
  }

  async kill(...list: Sandbox[]): Promise<void> {
    await Promise.all(list.map((s) => s.kill()));
    for (const s of list) {
      this.sandboxes.delete(s);
      s.close();
    }
  }

  async removeSnapshot(name: string): Promise<void> {
    await Snapshots.remove(name);
    this.snapshots.delete(name);
  }

  /** Sandboxes first: a snapshot is refused removal while one is layered on it. */
  async cleanup(): Promise<void> {
    await Promise.allSettled([...this.sandboxes].map((s) => s.kill()));
    await Promise.allSettled([...this.snapshots].map((n) => Snapshots.remove(n)));
    for (const s of this.sandboxes) s.close();
  }
}

/** `p90 …, N runs`: the note every timed row carries. */
const spread = (samples: number[]) => `p90 ${percentile(samples, 90).toFixed(0)} ms, ${samples.length} runs`;

/** A sandbox made by `start`, timed until it is made (its agent answers) and until its first command's result. */
async function toFirstCommand(start: () => Promise<Sandbox>, owned: Owned): Promise<{ sbx: Sandbox; ms: number; createMs: number }> {
  const t = performance.now();
  const sbx = owned.add(await start());
  const createMs = performance.now() - t;
  await sbx.commands.run('true');
  return { sbx, ms: performance.now() - t, createMs };
}

/** A warm sandbox that has done some work: its memory holds pages a copy or a pause must carry. */
async function busySandbox(name: string, owned: Owned): Promise<Sandbox> {
  const sbx = owned.add(await Sandbox.create({ name, memoryMib: MEMORY_MIB }));
  await sbx.commands.run(`dd if=/dev/urandom of=/dev/shm/fill bs=1M count=${SOURCE_FILL_MB} 2>/dev/null`);
  return sbx;
}

/** Adds how `sbx` started to `into` (`warm`, or `cold (why)` when it could have started warm). */
async function tally(into: Map<string, number>, sbx: Sandbox): Promise<void> {
  const { origin } = await sbx.getInfo();
  const key = origin.coldReason ? `cold (${origin.coldReason})` : origin.start;
  into.set(key, (into.get(key) ?? 0) + 1);
}

/** How each of `list` started, counted. */
async function starts(list: Sandbox[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const s of list) await tally(counts, s);
  return counts;
}

/** Empty when every sandbox started as `want`; else a warning for the note, since the timing is then not of `want`. */
function unexpected(counts: Map<string, number>, want: string): string {
  const other = [...counts].filter(([k]) => k !== want);
  return other.length ? `; NOT ALL ${want}: ${other.map(([k, n]) => `${n} ${k}`).join(', ')}` : '';
}

/** 1. Warm and cold creates to their first command, interleaved so both see the same machine. */
async function warmAgainstCold(runs: number, owned: Owned): Promise<Row[]> {
  const warm: number[] = [];
  const warmCreate: number[] = [];
  const cold: number[] = [];
  const warmStarts = new Map<string, number>();
  const coldStarts = new Map<string, number>();
  for (let i = 0; i < runs; i++) {
    const w = await toFirstCommand(() => Sandbox.create({ memoryMib: MEMORY_MIB }), owned);
    warm.push(w.ms);
    warmCreate.push(w.createMs);
    await tally(warmStarts, w.sbx);
    await owned.kill(w.sbx);
    const c = await toFirstCommand(() => Sandbox.create({ memoryMib: MEMORY_MIB, warm: false }), owned);
    cold.push(c.ms);
    await tally(coldStarts, c.sbx);
    await owned.kill(c.sbx);
  }
  return [
    {
      metric: 'warm create → first commands.run(true) (SDK)',
      value: median(warm),
      unit: 'ms',
      target: 'p50 <= 100',
      note: spread(warm) + unexpected(warmStarts, 'warm'),
    },
    { metric: '  of which: Sandbox.create alone', value: median(warmCreate), unit: 'ms', note: 'the rest is the first command' },
    {
      metric: 'cold create (warm: false) → first command',
      value: median(cold),
      unit: 'ms',
      note: spread(cold) + unexpected(coldStarts, 'cold'),
    },
    { metric: '  cold / warm', value: median(cold) / median(warm), unit: 'x' },
  ];
}

/** `n` creates at once; every one made is owned before any failure is thrown, so none is left behind. */
async function createMany(n: number, warm: boolean, owned: Owned): Promise<Sandbox[]> {
  const made = await Promise.allSettled(
    Array.from({ length: n }, () => Sandbox.create({ memoryMib: MEMORY_MIB, ...(warm ? {} : { warm: false }) })),
  );
  const list = made.flatMap((r) => (r.status === 'fulfilled' ? [owned.add(r.value)] : []));
  const failed = made.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw new Error(`${n - list.length} of ${n} concurrent creates failed: ${(failed.reason as Error).message}`);
  return list;
}

/** 2. `n` creates at once, until every agent answers (as bench/server.ts measures them). */
async function createsAtOnce(n: number, warm: boolean, owned: Owned): Promise<{ perSec: number; sec: number; note: string }> {
  const t = performance.now();
  const list = await createMany(n, warm, owned);
  const sec = (performance.now() - t) / 1000;
  const note = unexpected(await starts(list), warm ? 'warm' : 'cold');
  await owned.kill(...list);
  return { perSec: n / sec, sec, note };
}

async function concurrentCreates(owned: Owned): Promise<Row[]> {
  const warm = await createsAtOnce(CONCURRENT, true, owned);
  const cold = await createsAtOnce(COLD_CONCURRENT, false, owned);
  return [
    {
      metric: `${CONCURRENT} concurrent warm creates (${MEMORY_MIB} MiB)`,
      value: warm.perSec,
      unit: '/s',
      target: '>= 10',
      note: `all answering in ${warm.sec.toFixed(2)} s${warm.note}`,
    },
    {
      metric: `${COLD_CONCURRENT} concurrent cold creates (${MEMORY_MIB} MiB)`,
      value: cold.perSec,
      unit: '/s',
      note: `all answering in ${cold.sec.toFixed(2)} s; ${COLD_CONCURRENT}, not ${CONCURRENT}: cold boots share 2 cores${cold.note}`,
    },
  ];
}

/** A fork of `source` with `count` copies, timed until it returns and until the first copy's first command. */
async function forkOnce(
  source: Sandbox,
  count: number,
  owned: Owned,
  shareMemory?: boolean,
): Promise<{ forkMs: number; commandMs: number; pss: number }> {
  const t = performance.now();
  const clones = (await source.fork({ count, shareMemory })).map((s) => owned.add(s));
  const forkMs = performance.now() - t;
  await (clones[0] as Sandbox).commands.run('true');
  const commandMs = performance.now() - t;
  // Each copy's share of the host memory, right after: what the fork costs in memory.
  const pss = median(await Promise.all(clones.map(async (c) => smaps(await pidOf(c)).pss)));
  await owned.kill(...clones);
  return { forkMs, commandMs, pss };
}

/**
 * 3. Fork of a running sandbox: one copy to its first command, and the fork call
 * alone for one copy against ten (which should cost little more than one: the
 * source is copied once, the copies restore in parallel). A warm source's first
 * copy is timed apart: it alone pays for reading the source's whole RAM mapping.
 */
async function forks(source: Sandbox, runs: number, owned: Owned): Promise<Row[]> {
  const first = await forkOnce(source, 1, owned);
  const firstCommand: number[] = [];
  const one: number[] = [];
  const wide: number[] = [];
  const widePss: number[] = [];
  const whole: number[] = [];
  const wholePss: number[] = [];
  for (let i = 0; i < runs; i++) {
    const f = await forkOnce(source, 1, owned);
    one.push(f.forkMs);
    firstCommand.push(f.commandMs);
    const w = await forkOnce(source, FORK_WIDE, owned);
    wide.push(w.forkMs);
    widePss.push(w.pss);
    // Fewer runs: the same fork, each copy loading the whole state instead of sharing a file.
    if (i < Math.min(runs, 5)) {
      const s = await forkOnce(source, FORK_WIDE, owned, false);
      whole.push(s.forkMs);
      wholePss.push(s.pss);
    }
  }
  return [
    {
      metric: `fork of a running ${MEMORY_MIB} MiB sandbox → first command in the copy`,
      value: median(firstCommand),
      unit: 'ms',
      target: '<= 300',
      note: `${spread(firstCommand)}; warm source, ${SOURCE_FILL_MB} MB in its /dev/shm`,
    },
    {
      metric: '  the first fork of that source → first command',
      value: first.commandMs,
      unit: 'ms',
      note: 'one sample, before the runs above',
    },
    { metric: '  fork({ count: 1 }) alone', value: median(one), unit: 'ms', note: spread(one) },
    {
      metric: `  fork({ count: ${FORK_WIDE} }) alone`,
      value: median(wide),
      unit: 'ms',
      note: `${spread(wide)}; Pss of a copy ${median(widePss).toFixed(1)} MiB`,
    },
    { metric: `  count ${FORK_WIDE} / count 1`, value: median(wide) / median(one), unit: 'x', target: '<= 2' },
    {
      metric: `  fork({ count: ${FORK_WIDE}, shareMemory: false }) alone`,
      value: median(whole),
      unit: 'ms',
      note: `${spread(whole)}; Pss of a copy ${median(wholePss).toFixed(1)} MiB (each loads the whole state)`,
    },
  ];
}

/**
 * 4. Snapshots of the running source and restores of them to the first command.
 * The source's pause is the fork's too (a fork is a hidden snapshot and restores
 * of it), and only a snapshot reports it.
 */
async function snapshots(source: Sandbox, runs: number, owned: Owned): Promise<Row[]> {
  const paused: number[] = [];
  const total: number[] = [];
  const restore: number[] = [];
  const mapped: number[] = [];
  const madeIn: number[] = [];
  for (let i = 0; i < runs; i++) {
    const name = `bench-${i}`;
    owned.addSnapshot(name);
    const snap = await source.snapshot({ name });
    paused.push(snap.timing.pausedMs);
    total.push(snap.timing.totalMs);
    // At once: the whole state is loaded (its memory file is still being made).
    const r = await toFirstCommand(() => Sandbox.create({ snapshot: name }), owned);
    restore.push(r.ms);
    await owned.kill(r.sbx);
    // Once its memory is a file: mapped, the devices alone loaded.
    const t = performance.now();
    while (!(await Snapshots.get(name)).sharedMemory && performance.now() - t < 60_000) await new Promise((res) => setTimeout(res, 20));
    madeIn.push(performance.now() - t);
    const m = await toFirstCommand(() => Sandbox.create({ snapshot: name }), owned);
    mapped.push(m.ms);
    await owned.kill(m.sbx);
    await owned.removeSnapshot(name);
  }
  const stall = await stallDuringSnapshot(source, Math.min(runs, 5), owned);
  const shared = await idleCopies(source, owned);
  return [
    {
      metric: `snapshot of a running ${MEMORY_MIB} MiB sandbox: source paused`,
      value: median(paused),
      unit: 'ms',
      target: '<= 100 (fork pause)',
      note: `${spread(paused)}; the server's timing.pausedMs`,
    },
    {
      metric: '  longest exec round trip on the source meanwhile',
      value: median(stall.worst),
      unit: 'ms',
      note: `usual ${stall.usual.toFixed(1)} ms; execs in a loop, ${stall.worst.length} other snapshots`,
    },
    { metric: '  snapshot total', value: median(total), unit: 'ms', note: spread(total) },
    {
      metric: 'restore of that snapshot → first command',
      value: median(mapped),
      unit: 'ms',
      target: '<= 200',
      note: `${spread(mapped)}; from its memory file`,
    },
    {
      metric: '  restore at once (whole state, file not made yet)',
      value: median(restore),
      unit: 'ms',
      note: spread(restore),
    },
    {
      metric: `idle copies of one snapshot (${SNAPSHOT_COPIES} at once): Pss`,
      value: median(shared.pss),
      unit: 'MiB',
      note: `Private_Dirty ${median(shared.dirty).toFixed(1)} MiB; restored from its memory file, ${SOURCE_FILL_MB} MB of the source's /dev/shm in it`,
    },
    {
      metric: '  its memory file made in the background',
      value: median(madeIn),
      unit: 'ms',
      note: 'after the restore above; what a restore waits for to share memory',
    },
  ];
}

const SNAPSHOT_COPIES = 10;

/** Copies of one snapshot restored from its memory file, idle: what they share. */
async function idleCopies(source: Sandbox, owned: Owned): Promise<{ pss: number[]; dirty: number[] }> {
  const name = 'bench-shared';
  owned.addSnapshot(name);
  await source.snapshot({ name });
  const t = performance.now();
  while (!(await Snapshots.get(name)).sharedMemory && performance.now() - t < 60_000) await new Promise((res) => setTimeout(res, 50));
  const list = (await Promise.all(Array.from({ length: SNAPSHOT_COPIES }, () => Sandbox.create({ snapshot: name })))).map((s) =>
    owned.add(s),
  );
  await new Promise((r) => setTimeout(r, 3000));
  const mem = await Promise.all(list.map(async (s) => smaps(await pidOf(s))));
  await owned.kill(...list);
  await owned.removeSnapshot(name);
  return { pss: mem.map((m) => m.pss), dirty: mem.map((m) => m.privateDirty) };
}

/**
 * The pause as a client sees it, to check the server's own figure from outside:
 * execs on the source in a loop while a snapshot is taken, the longest round trip
 * of each (the pause, plus the server's own work meanwhile), against the usual one.
 */
async function stallDuringSnapshot(source: Sandbox, runs: number, owned: Owned): Promise<{ usual: number; worst: number[] }> {
  const usual: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await source.commands.run('true');
    usual.push(performance.now() - t);
  }
  const worst: number[] = [];
  for (let i = 0; i < runs; i++) {
    let snapping = true;
    let longest = 0;
    const probe = (async () => {
      while (snapping) {
        const t = performance.now();
        await source.commands.run('true');
        longest = Math.max(longest, performance.now() - t);
      }
    })();
    const name = `bench-probed-${i}`;
    owned.addSnapshot(name);
    await source.snapshot({ name });
    snapping = false;
    await probe;
    worst.push(longest);
    await owned.removeSnapshot(name);
  }
  return { usual: median(usual), worst };
}

/**
 * 6. Pause and resume, and QEMU's resident memory before the first pause (a warm
 * start that did some work) against after each resume (its memory read back from
 * the saved state).
 */
async function pauseResume(sbx: Sandbox, runs: number, owned: Owned): Promise<Row[]> {
  const pause: number[] = [];
  const resume: number[] = [];
  const rssAfter: number[] = [];
  const rssBefore = processMetrics(await pidOf(sbx)).rssBytes / MIB;
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    await sbx.pause();
    pause.push(performance.now() - t);
    t = performance.now();
    await sbx.resume();
    resume.push(performance.now() - t);
    await sbx.commands.run('true'); // untimed: the RSS of a guest that has run again
    rssAfter.push(processMetrics(await pidOf(sbx)).rssBytes / MIB);
  }
  await owned.kill(sbx);
  return [
    { metric: `pause of a running ${MEMORY_MIB} MiB sandbox`, value: median(pause), unit: 'ms', note: spread(pause) },
    { metric: 'resume of it', value: median(resume), unit: 'ms', note: spread(resume) },
    {
      metric: '  QEMU RSS before the first pause',
      value: rssBefore,
      unit: 'MiB',
      note: `warm start, ${SOURCE_FILL_MB} MB in /dev/shm`,
    },
    { metric: '  QEMU RSS after a resume', value: median(rssAfter), unit: 'MiB', note: 'and one command' },
  ];
}

async function pidOf(sbx: Sandbox): Promise<number> {
  const { pid } = await sbx.getInfo();
  if (!pid) throw new Error(`sandbox ${sbx.name} has no VM process`);
  return pid;
}

/** Pss and Private_Dirty of a process, in MiB: Pss splits pages shared with other sandboxes among them. */
function smaps(pid: number): { pss: number; privateDirty: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { pss: kb('Pss') / 1024, privateDirty: kb('Private_Dirty') / 1024 };
}

function memAvailableMib(): number {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]) / 1024;
}

/**
 * `n` idle sandboxes at once, made in batches (so the measure is of memory, not
 * of a create storm), left to settle, then measured per QEMU process.
 */
async function idleSet(n: number, warm: boolean, owned: Owned): Promise<{ list: Sandbox[]; pss: number[]; dirty: number[] }> {
  const list: Sandbox[] = [];
  for (let i = 0; i < n; i += 10) list.push(...(await createMany(Math.min(10, n - i), warm, owned)));
  await new Promise((r) => setTimeout(r, 3000));
  const mem = await Promise.all(list.map(async (s) => smaps(await pidOf(s))));
  return { list, pss: mem.map((m) => m.pss), dirty: mem.map((m) => m.privateDirty) };
}

/** 5. Host memory of many idle warm sandboxes, against a few cold ones. */
async function idleMemory(owned: Owned): Promise<Row[]> {
  await new Promise((r) => setTimeout(r, 3000)); // the sandboxes removed before have given their memory back
  const before = memAvailableMib();
  const warm = await idleSet(IDLE, true, owned);
  const drop = before - memAvailableMib();
  const warmNote = unexpected(await starts(warm.list), 'warm');
  await owned.kill(...warm.list);
  const cold = await idleSet(IDLE_COLD, false, owned);
  await owned.kill(...cold.list);
  const sum = warm.pss.reduce((a, b) => a + b, 0);
  return [
    {
      metric: `idle warm sandbox (${IDLE} of ${MEMORY_MIB} MiB at once): Pss`,
      value: median(warm.pss),
      unit: 'MiB',
      target: '<= 48',
      note: `max ${Math.max(...warm.pss).toFixed(1)} MiB, 3 s after the last create${warmNote}`,
    },
    { metric: '  its Private_Dirty', value: median(warm.dirty), unit: 'MiB' },
    { metric: `  all ${IDLE}: sum of Pss`, value: sum, unit: 'MiB' },
    { metric: `  all ${IDLE}: MemAvailable drop`, value: drop, unit: 'MiB', note: 'host-wide: /proc/meminfo before the creates and after' },
    { metric: `idle cold sandbox (${IDLE_COLD} at once): Pss`, value: median(cold.pss), unit: 'MiB' },
    { metric: '  its Private_Dirty', value: median(cold.dirty), unit: 'MiB' },
  ];
}
