/**
 * `npm run bench:compare [REF]`: this checkout against another commit (default
 * HEAD~1), side by side in one run, alternating A and B each round so both see
 * the same machine: cold start (`vmbox run -- true`), a boot (`--cold`), exec round trip through
 * the SDK, 64 MiB through `sbx.files` each way, 20 concurrent creates. Each
 * side has its own server and home (the kernel cache is shared). Medians.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { paths } from '../src/paths.js';
import { median, printTable, type Row } from './stats.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const ref = process.argv[2] ?? process.env.BENCH_COMPARE ?? 'HEAD~1';
const ROUNDS = Number(process.env.BENCH_RUNS || 5);

interface Side {
  name: string;
  dir: string;
  home: string;
}
interface Sample {
  coldMs: number;
  bootMs: number;
  execMs: number;
  writeMiBs: number;
  readMiBs: number;
  createsSec: number;
}

/** The other commit, checked out beside this one and built (its own dist; this checkout's node_modules). */
function checkout(): Side {
  const sha = execFileSync('git', ['rev-parse', '--short', ref], { cwd: root, encoding: 'utf8' }).trim();
  const dir = join(tmpdir(), `vmbox-compare-${sha}`);
  if (!existsSync(join(dir, 'dist', 'index.mjs'))) {
    rmSync(dir, { recursive: true, force: true });
    execFileSync('git', ['worktree', 'add', '--force', '--detach', dir, sha], { cwd: root, stdio: 'ignore' });
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    process.stderr.write(`building ${ref} (${sha}) in ${dir}\n`);
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: dir, stdio: 'inherit' });
    execFileSync('touch', [join(dir, 'dist', '.stamp')]);
  }
  return { name: `${ref} (${sha})`, dir, home: home() };
}

/** A home of its own that shares the built kernel and agent cache. */
function home(): string {
  const h = mkdtempSync(join(tmpdir(), 'vmbox-compare-home-'));
  mkdirSync(paths.cache(), { recursive: true });
  symlinkSync(paths.cache(), join(h, 'cache'));
  return h;
}

function env(side: Side): NodeJS.ProcessEnv {
  return { ...process.env, VMBOX_HOME: side.home, VMBOX_SOCKET: '' };
}

/** `vmbox run -- true` (a warm start once the image's template is made), or with `--cold` a boot every time. */
function timeRun(side: Side, cold = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const args = [join(side.dir, 'dist', 'vmbox.mjs'), 'run', ...(cold ? ['--cold'] : []), '--', 'true'];
    const child = spawn(process.execPath, args, { stdio: 'ignore', env: env(side) });
    child.once('exit', (code) =>
      code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${side.name}: vmbox run exited ${code}`)),
    );
  });
}

async function sample(side: Side): Promise<Sample> {
  const coldMs = await timeRun(side);
  const bootMs = await timeRun(side, true);
  const worker = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(root, 'bench', 'compare-worker.ts'), join(side.dir, 'dist', 'index.mjs')],
    { env: env(side), encoding: 'utf8', cwd: root },
  );
  if (worker.status !== 0) throw new Error(`${side.name}: ${worker.stderr}`);
  return { coldMs, bootMs, ...JSON.parse(worker.stdout.trim().split('\n').pop() as string) };
}

function stopServer(side: Side): void {
  spawnSync('pkill', ['-f', `qemu-system.*${side.home}`]);
  try {
    const pid = Number(execFileSync('cat', [join(side.home, 'server.pid')], { encoding: 'utf8' }));
    if (pid > 0) process.kill(pid, 'SIGTERM');
  } catch {}
}

const a: Side = { name: 'this checkout', dir: root, home: home() };
const b = checkout();
const samples = new Map<Side, Sample[]>([
  [a, []],
  [b, []],
]);
try {
  // First runs build each side's base image and start its server: not counted.
  await timeRun(a);
  await timeRun(b);
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 ? [b, a] : [a, b]) {
      samples.get(side)?.push(await sample(side));
      process.stderr.write(`round ${round + 1}/${ROUNDS}: ${side.name} done\n`);
    }
  }
} finally {
  for (const side of [a, b]) {
    stopServer(side);
    rmSync(side.home, { recursive: true, force: true });
  }
}

const m = (side: Side, k: keyof Sample) => median((samples.get(side) ?? []).map((s) => s[k]));
const metrics: [keyof Sample, string, string][] = [
  ['coldMs', 'cold start: vmbox run -- true', 'ms'],
  ['bootMs', 'boot: vmbox run --cold -- true', 'ms'],
  ['execMs', 'exec round trip: SDK commands.run(true)', 'ms'],
  ['writeMiBs', 'files.write 64 MiB', 'MiB/s'],
  ['readMiBs', 'files.read 64 MiB', 'MiB/s'],
  ['createsSec', `${process.env.BENCH_CONCURRENT || 20} concurrent creates`, 's'],
];
const rows: Row[] = metrics.flatMap(([k, metric, unit]) => [
  { metric, value: m(a, k), unit, note: 'this checkout' },
  { metric: '', value: m(b, k), unit, note: b.name },
  { metric: '  this / that', value: m(a, k) / m(b, k), unit: 'x' },
]);
console.log(`${ROUNDS} rounds, alternating\n`);
printTable(rows);
const dir = join(root, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `compare-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(
  file,
  `${JSON.stringify({ date: new Date().toISOString(), against: b.name, rounds: ROUNDS, samples: Object.fromEntries([...samples].map(([s, v]) => [s.name, v])) }, null, 2)}\n`,
);
console.log(`\nwritten to ${file}`);
