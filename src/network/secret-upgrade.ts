import type { Agent, IncomingMessage } from 'node:http';
import { type Duplex, pipeline } from 'node:stream';

import { responseFor, type ServeOptions, sendUpstream } from './secret-forward.js';

/**
 * A request that asks to switch protocols (a WebSocket's, mostly): its head is checked and
 * rewritten like any other, and once upstream agrees both ways are joined as they are. What
 * passes after the switch is not looked into: placeholders in it stay placeholders, and
 * values in it are not masked.
 */
export function forwardUpgrade(req: IncomingMessage, guest: Duplex, head: Buffer, agent: Agent, opts: ServeOptions): void {
  guest.on('error', () => guest.destroy());
  const answer = (status: number, message: string, headers: string[]) => {
    const lines = [`HTTP/1.1 ${status} ${message}`];
    for (let i = 0; i + 1 < headers.length; i += 2) lines.push(`${headers[i]}: ${headers[i + 1]}`);
    guest.write(`${lines.join('\r\n')}\r\n\r\n`);
  };
  const refuse = (status: number, reason: string) => {
    answer(status, status === 403 ? 'Forbidden' : 'Bad Gateway', ['Content-Type', 'text/plain; charset=utf-8', 'Connection', 'close']);
    guest.end(`vmbox: ${reason}\n`);
  };

  const up = sendUpstream(req, agent, opts, refuse);
  if (!up) return;
  guest.once('close', () => up.destroy());
  up.on('upgrade', (upRes: IncomingMessage, upSocket: Duplex, upHead: Buffer) => {
    const out = responseFor(upRes, req.method, opts.secrets, ['connection', 'upgrade']);
    answer(101, upRes.statusMessage || 'Switching Protocols', 'headers' in out ? out.headers : []);
    guest.write(upHead);
    upSocket.write(head);
    pipeline(guest, upSocket, guest, () => {
      guest.destroy();
      upSocket.destroy();
    });
  });
  // Upstream declined: its answer goes back whole, ended by the end of the connection.
  up.on('response', (upRes) => {
    const out = responseFor(upRes, req.method, opts.secrets);
    if ('refused' in out) {
      upRes.destroy();
      refuse(502, `${opts.host}: ${out.refused}`);
      return;
    }
    answer(upRes.statusCode ?? 502, upRes.statusMessage ?? '', [...out.headers, 'Connection', 'close']);
    pipeline([upRes, ...out.stages, guest], () => guest.destroy());
  });
  up.on('error', (err) => refuse(502, `${opts.host}: ${err.message}`));
  up.end();
}
