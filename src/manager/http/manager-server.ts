import { registerObserveRoutes } from './routes/observe-routes.js';
import { NEXUS_VERSION } from '../../contracts/version.js';
import { type HttpServer, createHttpServer } from '../../http/http-server.js';
import type { ServerTls } from '../../kit/tls-files.js';
import type { Logger } from 'pino';
import cors from '@fastify/cors';
import type { ManagerServices } from './manager-services.js';

export type { ManagerServices } from './manager-services.js';
import { registerAuthentication, registerAuthorization } from './access-control.js';
import { type RateLimits, registerRateLimits } from './rate-limits.js';
import { registerAccessRoutes } from './routes/access-routes.js';
import { registerVmRoutes } from './routes/vm-routes.js';
import { registerNetworkRoutes } from './routes/network-routes.js';
import { registerSnapshotRoutes } from './routes/snapshot-routes.js';
import { registerIdempotency } from './idempotency.js';
import { registerHealthRoutes } from './routes/health-routes.js';
import { registerHostRoutes } from './routes/host-routes.js';
import { registerImageRoutes } from './routes/image-routes.js';

export interface ManagerServerOptions {
  logger: Logger;
  bodyLimitBytes?: number;
  /** Per token and per client address, per minute. */
  rateLimits?: RateLimits;
  /** Exact browser origins allowed to call (CORS); none by default. */
  corsOrigins?: string[];
  /** Serve HTTPS with this certificate and key. */
  tls?: ServerTls;
  /** Routes for `nexus dev` only (reading a log by path). */
  devRoutes?: boolean;
}

export async function createManagerServer(services: ManagerServices, options: ManagerServerOptions): Promise<HttpServer> {
  const app = await createHttpServer({
    logger: options.logger,
    metricsPrefix: 'nexus_manager',
    bodyLimitBytes: options.bodyLimitBytes,
    tls: options.tls,
    openapi: {
      title: 'Nexus manager API',
      version: NEXUS_VERSION,
      description: 'Create, run, observe and retire microVMs across hosts. Every non-2xx answer is an ErrorBody.',
    },
  });
  // The first request hook after the request id: a flood is turned away before anything else looks at it.
  const rateLimits = await registerRateLimits(app, options.rateLimits ?? { readsPerMinute: 1000, writesPerMinute: 100, requestsPerAddressPerMinute: 6000 });
  if (options.corsOrigins && options.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: options.corsOrigins,
      methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'if-match', 'x-request-id'],
    });
  }
  // authn -> per-token limit -> authz and audit: a token past its limit is turned away before
  // its call costs a database write (the audit row, the VM's state for it).
  registerAuthentication(app, services.access);
  rateLimits.registerTokenLimits();
  registerAuthorization(app, services.audit, services.refusals, (resource, id) =>
    resource === 'vm'
      ? services.vms.auditSummary(id)
      : resource === 'network'
        ? services.networks.auditSummary(id)
        : resource === 'snapshot'
          ? services.snapshots.auditSummary(id)
          : Promise.resolve(null),
  );
  registerIdempotency(app, services.idempotency);
  registerHealthRoutes(app, services);
  registerHostRoutes(app, services);
  registerImageRoutes(app, services);
  registerAccessRoutes(app, services);
  registerVmRoutes(app, services);
  registerNetworkRoutes(app, services);
  registerSnapshotRoutes(app, services);
  registerObserveRoutes(app, services, options.devRoutes ?? false);
  return app;
}
