import type { Logger } from 'pino';
import type { AgentCredentials } from '../app/agent-credentials.js';
import type { VmUseCases } from '../app/vm-use-cases.js';
import { createAgentServer } from './agent-server.js';

/**
 * The agent's OpenAPI document, built from the route schemas without a host behind them: routes
 * are registered but never called. Used to publish docs/agent-api.md.
 */
export async function buildAgentOpenApiDocument(logger: Logger): Promise<Record<string, unknown>> {
  const unused = new Proxy(
    {},
    {
      get: () => {
        throw new Error('no services while building the OpenAPI document');
      },
    },
  );
  // The routes take their use cases at registration: each one is there, and throws if called.
  const useCases = new Proxy({}, { get: () => unused }) as VmUseCases;
  const app = await createAgentServer(
    { credentials: unused as AgentCredentials, startedAt: 0, capacity: () => Promise.reject(new Error('unused')), vms: useCases },
    { logger },
  );
  await app.ready();
  const document = app.swagger() as unknown as Record<string, unknown>;
  await app.close();
  return document;
}
