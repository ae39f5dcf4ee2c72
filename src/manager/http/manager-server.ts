import { NEXUS_VERSION } from '../../contracts/version.js';
import { type HttpServer, createHttpServer } from '../../kit/http/http-server.js';
import type { Logger } from 'pino';
import type { Database } from '../adapters/sql/database.js';
import type { HostRegistry } from '../app/host-registry.js';
import type { ImageRegistry } from '../app/image-registry.js';
import type { AccessService } from '../app/access-service.js';
import type { AuditLog } from '../app/audit-log.js';
import type { AuditRepo } from '../ports/access-repos.js';
import { registerAccessControl } from './access-control.js';
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
  idempotency: IdempotencyRepo;
}

export interface ManagerServerOptions {
  logger: Logger;
  bodyLimitBytes?: number;
}

export async function createManagerServer(services: ManagerServices, options: ManagerServerOptions): Promise<HttpServer> {
  const app = await createHttpServer({
    logger: options.logger,
    metricsPrefix: 'nexus_manager',
    bodyLimitBytes: options.bodyLimitBytes,
    openapi: {
      title: 'Nexus manager API',
      version: NEXUS_VERSION,
      description: 'Create, run, observe and retire microVMs across hosts. Every non-2xx answer is an ErrorBody.',
    },
  });
  registerAccessControl(app, services.access, services.audit, (resource, id) => (resource === 'vm' ? services.vms.auditSummary(id) : Promise.resolve(null)));
  registerIdempotency(app, services.idempotency);
  registerHealthRoutes(app, services);
  registerHostRoutes(app, services);
  registerImageRoutes(app, services);
  registerAccessRoutes(app, services);
  registerVmRoutes(app, services);
  return app;
}
