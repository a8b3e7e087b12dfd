import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { type Duplex, pipeline } from 'node:stream';

import { MAX_HEADER_BYTES, responseFor, type ServeOptions, sendUpstream } from './secret-forward.js';
import { forwardUpgrade } from './secret-upgrade.js';

/** How long an idle guest connection stays open between requests (where the stream can time out). */
const KEEP_ALIVE_MS = 60_000;
const TEXT = { 'content-type': 'text/plain; charset=utf-8' };

/**
 * Serves the HTTP/1.1 requests on one guest connection (already decrypted, if it was TLS) and
 * forwards each upstream over a connection of its own (one at a time, kept alive). Node's
 * parser frames the requests (keep-alive, pipelining, chunked bodies, bounded heads) and its
 * streams carry the bodies with backpressure.
 *
 * Rewritten: the request line and header values (`checkRequest`). Not rewritten: bodies, which
 * pass byte for byte — a body is content a server may store and serve back elsewhere, so a value
 * put there could reach the guest by a road the host does not watch. On the way back every value
 * becomes its placeholder again in response headers and is masked (`*`, same length) in bodies,
 * which are asked for, and if need be decoded, without content-encoding so the masking sees them.
 * Resolves when the guest connection closes.
 */
export function serveRequests(socket: Duplex, opts: ServeOptions): Promise<void> {
  const agent = opts.tls
    ? new https.Agent({ keepAlive: true, maxSockets: 1, ...opts.tls })
    : new http.Agent({ keepAlive: true, maxSockets: 1 });
  const server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES, keepAliveTimeout: KEEP_ALIVE_MS }, (req, res) =>
    forward(req, res, agent, opts),
  );
  server.on('upgrade', (req: IncomingMessage, guest: Duplex, head: Buffer) => forwardUpgrade(req, guest, head, agent, opts));
  return new Promise((resolve) => {
    socket.once('close', () => {
      agent.destroy();
      resolve();
    });
    server.emit('connection', socket);
  });
}

function forward(req: IncomingMessage, res: ServerResponse, agent: http.Agent, opts: ServeOptions): void {
  const up = sendUpstream(req, agent, opts, (status, reason) => {
    // The request's body, if any, is read and dropped after this answer (Node does that), so the guest reads it rather than EPIPE.
    res.writeHead(status, TEXT).end(`vmbox: ${reason}\n`);
  });
  if (!up) return;
  up.on('response', (upRes) => {
    const out = responseFor(upRes, req.method, opts.secrets);
    if ('refused' in out) {
      upRes.destroy();
      res.writeHead(502, TEXT).end(`vmbox: ${opts.host}: ${out.refused}\n`);
      return;
    }
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out.headers);
    pipeline([upRes, ...out.stages, res], (err) => {
      if (err) res.destroy(); // a body cut short must not pass for a whole one
    });
  });
  up.on('error', (err) => {
    req.unpipe(up);
    if (res.headersSent) res.destroy();
    else res.writeHead(502, TEXT).end(`vmbox: ${opts.host}: ${err.message}\n`);
  });
  req.on('error', () => up.destroy());
  // A guest gone before the answer ends: upstream's connection is dropped, not left to finish for nobody.
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
}
