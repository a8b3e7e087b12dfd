import { VmboxError } from '../errors.js';

/** Human-sized numbers and plain tables for the CLI. */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function humanAge(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (Number.isNaN(s)) return '-';
  if (s < 60) return `${Math.floor(s)} seconds ago`;
  if (s < 3600) return `${Math.floor(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} hours ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('   ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** `1h`, `10m`, `30s`, `500ms`, or a bare number of seconds, in milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new VmboxError('invalidArgument', `${text}: expected a duration such as 30s, 10m, 1h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'];
  const ms = Math.round(Number(m[1]) * unit);
  if (ms <= 0) throw new VmboxError('invalidArgument', `${text}: must be more than zero`);
  return ms;
}

/** `3h 12m`, `45s`: how long something has been going. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** `10G`, `512M`, `1.5GiB`, `1T` (binary units) in MiB, for sizes such as `--disk`. */
export function parseSizeMib(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([MGT])(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new VmboxError('invalidArgument', `${text}: expected a size such as 512M or 10G`);
  const unit = { M: 1, G: 1024, T: 1024 * 1024 }[(m[2] ?? 'M').toUpperCase() as 'M' | 'G' | 'T'];
  const mib = Math.round(Number(m[1]) * unit);
  if (mib <= 0) throw new VmboxError('invalidArgument', `${text}: must be more than zero`);
  return mib;
}
