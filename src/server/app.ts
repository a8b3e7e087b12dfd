import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import { ApiKeys } from '../e2b/api-keys.js';
import { e2bRoutes, isE2bPath } from '../e2b/control-plane.js';
import { envdRoutes, isEnvdPath } from '../e2b/envd/routes.js';
import type { ImageService } from '../runtime/images.js';
import type { SandboxManager } from '../runtime/manager.js';
import { VERSION } from '../version.js';
import { errorResponse } from './errors.js';
import { apiKeyRoutes } from './routes/api-keys.js';
import { execRoutes } from './routes/exec.js';
import { fileRoutes } from './routes/files.js';
import { imageRoutes } from './routes/images.js';
import { logRoutes } from './routes/logs.js';
import { networkRoutes } from './routes/network.js';
import { sandboxRoutes } from './routes/sandboxes.js';
import { snapshotRoutes } from './routes/snapshots.js';
import { volumeRoutes } from './routes/volumes.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Came over TCP: the client may be on another machine, so host paths in it mean nothing here. */
    viaTcp: boolean;
  }
}

export interface AppOptions {
  /** Required on TCP connections; unix-socket clients are trusted by the socket's mode. */
  token?: string;
  /** Signs E2B envd access tokens; E2B's routes are served when it is given. */
  e2bSecret?: Buffer;
  logLevel?: string;
}

/**
 * The HTTP + WebSocket API. Routes only parse, call the manager and map errors;
 * `tcp` is a second listener sharing the handlers, behind the bearer token.
 */
export async function buildApp(
  manager: SandboxManager,
  images: ImageService,
  opts: AppOptions = {},
): Promise<{ app: FastifyInstance; tcp: http.Server }> {
  let tcp!: http.Server;
  const app = Fastify({
    logger: { level: opts.logLevel ?? process.env.VMBOX_LOG_LEVEL ?? 'warn' },
    // E2B_SANDBOX_URL with a trailing slash makes E2B's Python SDK ask for `//process.Process/…`.
    routerOptions: { ignoreDuplicateSlashes: true },
    // Unknown fields are errors, never silently dropped.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
    serverFactory: (handler) => {
      tcp = http.createServer(handler);
      return http.createServer(handler);
    },
  });
  tcp.on('upgrade', (req, socket, head) => app.server.emit('upgrade', req, socket, head));
  // Which connections came over TCP, marked when they are accepted: asking the
  // socket later (its remote address) fails open once a client has hung up.
  const overTcp = new WeakSet<object>();
  tcp.on('connection', (socket) => overTcp.add(socket));

  const token = opts.token ? Buffer.from(opts.token) : undefined;
  app.decorateRequest('viaTcp', false);
  app.addHook('onRequest', async (req, reply) => {
    if (!overTcp.has(req.raw.socket)) return; // the unix socket: its mode (0600) is the check
    req.viaTcp = true;
    if (opts.e2bSecret && (isE2bPath(req.url) || isEnvdPath(req.url))) return; // E2B's API checks its own keys and tokens
    const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
    if (!token || given.length !== token.length || !timingSafeEqual(given, token)) {
      return reply.code(401).send({ code: 'unauthorized', message: 'missing or wrong bearer token: send Authorization: Bearer <token>' });
    }
  });

  app.setErrorHandler((err, _req, reply) => {
    const { status, body } = errorResponse(err);
    if (body.code === 'internal') app.log.error(err);
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ code: 'notFound', message: `no route ${req.method} ${req.url}: see /openapi.json` }),
  );

  await app.register(swagger, {
    openapi: {
      info: { title: 'vmbox', version: VERSION, description: 'Hardware-isolated microVM sandboxes' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(websocket, { options: { maxPayload: 4 * 1024 * 1024 } });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/v1/health', async () => ({ ok: true, version: VERSION, pid: process.pid, running: manager.runningCount }));
  await app.register(sandboxRoutes(manager));
  await app.register(execRoutes(manager));
  await app.register(logRoutes(manager));
  await app.register(fileRoutes(manager));
  await app.register(networkRoutes(manager));
  await app.register(snapshotRoutes(manager));
  await app.register(volumeRoutes(manager.volumes));
  await app.register(imageRoutes(images));
  if (opts.e2bSecret) {
    const keys = new ApiKeys(manager.db);
    await app.register(apiKeyRoutes(keys));
    await app.register(e2bRoutes({ manager, keys, secret: opts.e2bSecret }));
    await app.register(envdRoutes(manager, opts.e2bSecret));
  }
  await app.ready();
  return { app, tcp };
}
