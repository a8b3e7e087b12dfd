import { createContextValues } from '@connectrpc/connect';
import { fastifyConnectPlugin } from '@connectrpc/connect-fastify';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { SandboxManager } from '../../runtime/manager.js';
import { Filesystem } from '../gen/filesystem/filesystem_pb.js';
import { Process } from '../gen/process/process_pb.js';
import { EnvdAdmission } from './caller.js';
import { httpError, rawRequest } from './errors.js';
import { envdFileRoutes } from './files-http.js';
import { filesystemService } from './filesystem-service.js';
import { GuestUsers } from './guest-users.js';
import { processService } from './process-service.js';
import { EnvdProcesses } from './processes.js';

/** The largest Connect message read: E2B's requests are small (file content goes through /files). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** The paths envd serves here; vmbox's own API lives under /v1, so they never meet. */
export const isEnvdPath = (url: string) => /^\/+(process\.Process|filesystem\.Filesystem)\/|^\/+(files|health|envs)(\?|$)/.test(url);

/**
 * E2B's in-sandbox daemon ("envd") served by vmbox's server for every
 * sandbox at once: the Connect services `process.Process` and
 * `filesystem.Filesystem` (code generated from E2B's .proto files), and REST
 * `/health`, `/envs`, `/files`. Requests name their sandbox (`E2b-Sandbox-Id`
 * or the Host) and carry its access token; each call maps onto the runtime as
 * vmbox's own routes do.
 */
export const envdRoutes =
  (m: SandboxManager, secret: Buffer): FastifyPluginAsync =>
  async (app) => {
    const users = new GuestUsers(m);
    const admission = new EnvdAdmission(m, secret, users);
    const fs = filesystemService(m, admission, users);
    await app.register(fastifyConnectPlugin, {
      routes: (router) => {
        router.service(Process, processService(admission, new EnvdProcesses(m)));
        router.service(Filesystem, fs);
      },
      readMaxBytes: MAX_MESSAGE_BYTES,
      contextValues: (req) => createContextValues().set(rawRequest, req.raw),
      // E2B's SDKs send no Connect-Protocol-Version header.
      requireConnectProtocolHeader: false,
    });
    app.addHook('onClose', async () => fs.closeWatchers());

    const host = (req: FastifyRequest) => req.headers.host;
    // E2B's health check: 204 while the sandbox runs, 502 (its proxy's answer) when it does not.
    app.get('/health', async (req, reply) => {
      try {
        await admission.running(req.headers, host(req));
        return reply.code(204).send();
      } catch (err) {
        const { status, body } = httpError(err);
        return reply.code(status).send(body);
      }
    });
    app.get('/envs', async (req, reply) => {
      try {
        const c = await admission.caller(req.headers, host(req));
        return m.find(c.sandboxId).spec.env ?? {};
      } catch (err) {
        const { status, body } = httpError(err);
        return reply.code(status).send(body);
      }
    });
    await app.register(envdFileRoutes(m, admission));
  };
