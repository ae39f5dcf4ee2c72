import type { VmObserver } from '../app/vm-observer.js';
import { registerObserveRoutes } from './routes/observe-routes.js';
import { NEXUS_VERSION } from '../../contracts/version.js';
import { type HttpServer, createHttpServer } from '../../kit/http/http-server.js';
import type { ServerTls } from '../../kit/tls-files.js';
import type { Logger } from 'pino';
import type { Database } from '../adapters/sql/database.js';
import type { HostRegistry } from '../app/host-registry.js';
import type { ImageRegistry } from '../app/image-registry.js';
import type { AccessService } from '../app/access-service.js';
import type { AuditLog } from '../app/audit-log.js';
import type { RefusalAudit } from '../app/refusal-audit.js';
import type { AuditRepo } from '../ports/access-repos.js';
import cors from '@fastify/cors';
import { registerAuthentication, registerAuthorization } from './access-control.js';
import { type RateLimits, registerRateLimits } from './rate-limits.js';
import { registerAccessRoutes } from './routes/access-routes.js';
import type { VmManager } from '../app/vm-manager.js';
import { registerVmRoutes } from './routes/vm-routes.js';
import { registerIdempotency } from './idempotency.js';
import type { IdempotencyRepo } from '../ports/idempotency-repo.js';
import { registerHealthRoutes } from './routes/health-routes.js';
import { registerHostRoutes } from './routes/host-routes.js';
import { registerImageRoutes } from './routes/image-routes.js';

/** What the routes call. Routes hold no logic of their own beyond mapping HTTP to these. */
export interface ManagerServices {
  database: Pick<Database, 'ping'>;
  hosts: HostRegistry;
  images: ImageRegistry;
  vms: VmManager;
  access: AccessService;
  audit: AuditRepo;
  auditLog: AuditLog;
  /** Where refusals anyone can repeat are audited, counted per source (see RefusalAudit). */
  refusals: Pick<RefusalAudit, 'note'>;
  idempotency: IdempotencyRepo;
  observer: VmObserver;
}

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
    await app.register(cors, { origin: options.corsOrigins, methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'if-match', 'x-request-id'] });
  }
  // authn -> per-token limit -> authz and audit: a token past its limit is turned away before
  // its call costs a database write (the audit row, the VM's state for it).
  registerAuthentication(app, services.access);
  rateLimits.registerTokenLimits();
  registerAuthorization(app, services.audit, services.refusals, (resource, id) => (resource === 'vm' ? services.vms.auditSummary(id) : Promise.resolve(null)));
  registerIdempotency(app, services.idempotency);
  registerHealthRoutes(app, services);
  registerHostRoutes(app, services);
  registerImageRoutes(app, services);
  registerAccessRoutes(app, services);
  registerVmRoutes(app, services);
  registerObserveRoutes(app, services, options.devRoutes ?? false);
  return app;
}
