import type { Logger } from 'pino';
import type { HostRegistry } from '../app/host-registry.js';
import { createManagerServer } from './manager-server.js';

/**
 * The manager's OpenAPI document, built from the route schemas without a database: routes are
 * registered but never called. Used to publish docs/api.md (without the dev-mode routes).
 */
export async function buildOpenApiDocument(logger: Logger, options: { devRoutes?: boolean } = {}): Promise<Record<string, unknown>> {
  const unused = new Proxy(
    {},
    {
      get: () => {
        throw new Error('no services while building the OpenAPI document');
      },
    },
  );
  const app = await createManagerServer(
    {
      database: unused as never,
      hosts: unused as HostRegistry,
      images: unused as never,
      vms: unused as never,
      networks: unused as never,
      snapshots: unused as never,
      access: unused as never,
      audit: unused as never,
      auditLog: unused as never,
      refusals: unused as never,
      idempotency: unused as never,
      observer: unused as never,
    },
    { logger, devRoutes: options.devRoutes },
  );
  await app.ready();
  const document = app.swagger() as unknown as Record<string, unknown>;
  await app.close();
  return document;
}
