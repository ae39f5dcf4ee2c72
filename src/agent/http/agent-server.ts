import type { Logger } from 'pino';
import { AGENT_API_PREFIX, AgentHealth, HostCapacity, ReplaceCredentialRequest } from '../../contracts/agent-api.js';
import { ErrorBody } from '../../contracts/errors.js';
import { OkResponse } from '../../contracts/vm-api.js';
import { NEXUS_VERSION } from '../../contracts/version.js';
import { bearerOf } from '../../http/bearer.js';
import { type HttpServer, createHttpServer } from '../../http/http-server.js';
import type { ServerTls } from '../../kit/tls-files.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { AgentCredentials } from '../app/agent-credentials.js';
import type { VmUseCases } from '../app/vm-use-cases.js';
import { registerProxyRoute, registerVmRoutes } from './vm-routes.js';

export interface AgentServices {
  vms: VmUseCases;
  /**
   * The credential every request must carry. No identity yet while the agent is still enrolling
   * (it binds first, to advertise the address it really holds): then it refuses all.
   */
  credentials: AgentCredentials;
  startedAt: number;
  capacity(): Promise<HostCapacity>;
}

/** The agent's HTTP API. Every route, /metrics included, needs the agent's bearer credential. */
export async function createAgentServer(services: AgentServices, options: { logger: Logger; proxyTimeoutMs?: number; tls?: ServerTls }): Promise<HttpServer> {
  const app = await createHttpServer({
    logger: options.logger,
    tls: options.tls,
    metricsPrefix: 'nexus_agent',
    openapi: {
      title: 'Nexus agent API',
      version: NEXUS_VERSION,
      description: "One host's executor: VMM processes, TAPs, inventory. Every request needs the host's bearer credential.",
    },
  });

  // onRequest runs before routing and body parsing: an unauthenticated caller learns nothing,
  // not even which routes exist.
  app.addHook('onRequest', async (request) => {
    const presented = bearerOf(request);
    if (!services.credentials.accepts(presented)) {
      throw new NexusError('unauthorized', presented === undefined ? 'a bearer credential is required' : 'the bearer credential is not valid', {
        suggestion: 'Send Authorization: Bearer <credential>; the agent keeps it in identity.json in its state dir.',
      });
    }
  });

  const unauthorized = { 401: ErrorBody };
  app.get(`${AGENT_API_PREFIX}/health`, { schema: { summary: 'The agent answers', response: { 200: AgentHealth, ...unauthorized } } }, async () => ({
    status: 'ok' as const,
    version: NEXUS_VERSION,
    uptime_seconds: Math.round((Date.now() - services.startedAt) / 100) / 10,
    host_id: services.credentials.current()?.enrollment?.hostId ?? null,
  }));
  app.put(
    `${AGENT_API_PREFIX}/credential`,
    {
      schema: {
        summary: 'Replace the credential (manager only): callers must present the new one from now on; the old one is accepted a little longer',
        body: ReplaceCredentialRequest,
        response: { 200: OkResponse, 400: ErrorBody, ...unauthorized },
      },
    },
    async (request) => {
      await services.credentials.replace(request.body.credential);
      return { ok: true as const };
    },
  );
  app.get(
    `${AGENT_API_PREFIX}/capacity`,
    { schema: { summary: 'What this host can give to guests', response: { 200: HostCapacity, ...unauthorized } } },
    async () => services.capacity(),
  );
  registerVmRoutes(app, services.vms);
  registerProxyRoute(app, services.vms.proxy, options.proxyTimeoutMs ?? 10_000);
  return app;
}
