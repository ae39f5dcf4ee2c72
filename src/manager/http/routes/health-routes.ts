import { Type } from 'typebox';
import { ErrorBody } from '../../../contracts/errors.js';
import { NexusError, messageOf } from '../../../kit/nexus-error.js';
import type { HttpServer } from '../../../http/http-server.js';
import type { ManagerServices } from '../manager-services.js';

const Readiness = Type.Object({
  status: Type.Literal('ready'),
  database: Type.Literal('ok'),
  ready_hosts: Type.Integer(),
});

export function registerHealthRoutes(app: HttpServer, services: ManagerServices): void {
  app.get(
    '/healthz',
    {
      config: { access: { public: true } },
      schema: { summary: 'Liveness: the process answers', tags: ['health'], response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { access: { public: true } },
      schema: {
        summary: 'Readiness: the database answers and at least one agent is ready',
        tags: ['health'],
        response: { 200: Readiness, 503: ErrorBody },
      },
    },
    async () => {
      try {
        await services.database.ping();
      } catch (error) {
        // The store answers a connection fault as database_unavailable, carrying the driver's error and when to retry.
        const fault = error instanceof NexusError ? error : undefined;
        throw new NexusError('not_ready', `database unreachable: ${messageOf(fault?.cause ?? error)}`, {
          suggestion: 'Check DATABASE_URL and that the server is up.',
          retryAfterSeconds: fault?.retryAfterSeconds,
        });
      }
      const readyHosts = await services.hosts.countReady();
      if (readyHosts === 0) {
        throw new NexusError('not_ready', 'no agent is ready', {
          suggestion: 'Start an agent enrolled with this manager (`nexus hosts join-token`, then `nexus agent --manager … --join-token …`).',
        });
      }
      return { status: 'ready' as const, database: 'ok' as const, ready_hosts: readyHosts };
    },
  );
}
