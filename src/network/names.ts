import { normalizeName } from './rules.js';

/**
 * Which names a sandbox saw resolve to which IPv4 address, so that a connection
 * to an address can be judged by the names the guest asked for (policy.ts).
 * Bounded, because the guest chooses what it resolves: the addresses seen least
 * recently go first, and each address keeps only its most recent names.
 *
 * Entries do not expire with the DNS TTL: programs keep addresses far past it
 * (connection pools, the JVM's cache, /etc/hosts written at start), and a
 * connection refused for a stale TTL would be a puzzling failure. Use (a lookup)
 * counts as seeing, so an address in use stays.
 */
export class NameRecord {
  /** Map and Set order is recency order: a touch deletes and sets again, so the first key is the oldest. */
  private readonly byAddress = new Map<string, Set<string>>();

  constructor(
    readonly maxAddresses = 4096,
    readonly maxNamesPerAddress = 16,
  ) {}

  /** Notes that each of `names` resolved to `ip` (the queried name and its CNAME chain). */
  record(ip: string, names: readonly string[]): void {
    const set = this.touch(ip) ?? new Set<string>();
    for (const raw of names) {
      const name = normalizeName(raw);
      set.delete(name);
      set.add(name);
      if (set.size > this.maxNamesPerAddress) set.delete(set.keys().next().value as string);
    }
    this.byAddress.set(ip, set);
    if (this.byAddress.size > this.maxAddresses) this.byAddress.delete(this.byAddress.keys().next().value as string);
  }

  /** The names seen for `ip`, oldest first; empty when none (or evicted). */
  namesFor(ip: string): string[] {
    const set = this.touch(ip);
    if (!set) return [];
    this.byAddress.set(ip, set);
    return [...set];
  }

  get size(): number {
    return this.byAddress.size;
  }

  clear(): void {
    this.byAddress.clear();
  }

  private touch(ip: string): Set<string> | undefined {
    const set = this.byAddress.get(ip);
    if (set) this.byAddress.delete(ip);
    return set;
  }
}
