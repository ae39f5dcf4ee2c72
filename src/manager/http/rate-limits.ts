import rateLimit from '@fastify/rate-limit';
import type { FastifyRequest } from 'fastify';
import type { HttpServer } from '../../kit/http/http-server.js';
import { NexusError } from '../../kit/nexus-error.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Per-token limits, reads and writes counted apart, over a minute: `X-RateLimit-Limit`,
 * `-Remaining` and `-Reset` on every answer, 429 `rate_limited` with `Retry-After` past them.
 * Counted after authentication (so per token; per address for calls without one), in each
 * manager's memory: behind several managers a token gets each one's allowance. Public routes
 * (health, the agents' enrollment and heartbeats) are not limited.
 */
export async function registerRateLimits(app: HttpServer, limits: { readsPerMinute: number; writesPerMinute: number }): Promise<void> {
  const isRead = (request: FastifyRequest) => READS.has(request.method);
  await app.register(rateLimit, {
    global: true,
    hook: 'preHandler',
    timeWindow: 60_000,
    keyGenerator: (request) => `${request.principal?.tokenId ?? `ip:${request.ip}`}:${isRead(request) ? 'read' : 'write'}`,
    max: (request) => (isRead(request) ? limits.readsPerMinute : limits.writesPerMinute),
    allowList: (request) => request.routeOptions.config.access?.public === true || request.routeOptions.url === '/metrics',
    errorResponseBuilder: (request, context) =>
      new NexusError('rate_limited', `more than ${context.max} ${isRead(request) ? 'reads' : 'writes'} a minute with this token`, {
        suggestion: `Retry after ${Math.ceil(context.ttl / 1000)} s, or spread the calls out.`,
        retryAfterSeconds: Math.ceil(context.ttl / 1000),
      }),
  });
}
