/** Phase timings for `VMBOX_TRACE=1`: where a command's wall time goes, printed to stderr. */
const enabled = process.env.VMBOX_TRACE === '1';
const marks: Array<[string, number]> = [];

export function mark(name: string): void {
  if (enabled) marks.push([name, performance.now()]);
}

export function printTrace(): void {
  if (!enabled) return;
  let prev = 0;
  for (const [name, t] of marks) {
    process.stderr.write(`trace ${name.padEnd(16)} ${t.toFixed(0).padStart(6)} ms  (+${(t - prev).toFixed(0)})\n`);
    prev = t;
  }
}
