/**
 * One side of `bench/compare.ts`: drives the SDK of one checkout (its
 * `dist/index.mjs`, passed as argv[2]) against that checkout's own server, in
 * the home of $VMBOX_HOME, and prints its timings as one JSON line. Only the
 * SDK calls both versions share are used, so any two commits compare.
 */
type Sdk = typeof import('../src/index.js');

const MIB = 1024 * 1024;
const sdk = (await import(process.argv[2] as string)) as Sdk;
const EXECS = 100;
const CONCURRENT = Number(process.env.BENCH_CONCURRENT || 20);

const sbx = await sdk.Sandbox.create({ memoryMib: 512 });
for (let i = 0; i < 10; i++) await sbx.commands.run(['true']); // warm-up
const exec: number[] = [];
for (let i = 0; i < EXECS; i++) {
  const t = performance.now();
  await sbx.commands.run(['true']);
  exec.push(performance.now() - t);
}
const data = Buffer.alloc(64 * MIB, 7);
let t = performance.now();
await sbx.files.write('/tmp/bench.bin', data);
const writeMiBs = 64 / ((performance.now() - t) / 1000);
await sbx.commands.run(['sync']);
t = performance.now();
const back = await sbx.files.read('/tmp/bench.bin', { format: 'bytes' });
const readMiBs = 64 / ((performance.now() - t) / 1000);
if (back.length !== data.length) throw new Error(`read ${back.length} bytes`);
await sbx.kill();

t = performance.now();
const many = await Promise.all(Array.from({ length: CONCURRENT }, () => sdk.Sandbox.create({ memoryMib: 128 })));
const createsSec = (performance.now() - t) / 1000;
await Promise.all(many.map((s) => s.kill()));

exec.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ execMs: exec[exec.length >> 1], writeMiBs, readMiBs, createsSec })}\n`);
process.exit(0);
