import type { EventQueue } from '../../util/event-queue.js';

/** The longest quiet a stream keeps, whatever the client asks: proxies cut idle connections. */
const MAX_INTERVAL_S = 60;

/**
 * E2B's streams send a keepalive every `Keepalive-Ping-Interval` seconds (its
 * SDKs ask for 50) so a quiet command's stream stays open through proxies.
 * Returns the function that stops it.
 */
export function keepalive<T>(q: EventQueue<T>, headers: Headers, item: T): () => void {
  const asked = Number(headers.get('keepalive-ping-interval'));
  const seconds = Number.isFinite(asked) && asked > 0 ? Math.min(asked, MAX_INTERVAL_S) : MAX_INTERVAL_S;
  const timer = setInterval(() => void q.push(item), seconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
