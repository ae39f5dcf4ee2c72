import rateLimit from '@fastify/rate-limit';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpServer } from '../../http/http-server.js';
import { NexusError } from '../../kit/nexus-error.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const WINDOW_MS = 60_000;

export interface RateLimits {
  /** Reads (GET, HEAD, OPTIONS) per token per minute. */
  readsPerMinute: number;
  /** Writes per token per minute. */
  writesPerMinute: number;
  /** Requests of any kind per client address (an IPv6 address by its /64) per minute. */
  requestsPerAddressPerMinute: number;
}

/** Where a request stands against one limit: what `X-RateLimit-*` say. */
interface Standing {
  max: number;
  remaining: number;
  resetSeconds: number;
  exceeded: boolean;
}

type Counter = (request: FastifyRequest) => Promise<Standing | undefined>;

/**
 * Rate limits in two places of the request's life, over a minute, in each manager's memory (behind
 * several managers a client gets each one's allowance):
 * - by client address, on every request, before CORS, authentication, routing to a handler or
 *   parsing the body, so calls without a token, with a wrong one or with a malformed body are
 *   counted and a flood is turned away before it costs a database read or a slow hash;
 * - by token, reads and writes apart, once the token is known.
 * (Wrong secrets per token id are limited where they are checked, in AccessService.)
 * Every answer that reached the first counter carries `X-RateLimit-Limit`, `-Remaining` and
 * `-Reset` of the limit nearest to running out; past one, 429 `rate_limited` with `Retry-After`.
 *
 * Hooks run in the order they are added: call this before anything else adds an `onRequest`
 * hook, and the function it answers right after authentication (which knows the token) and before
 * authorization and the audit (which write to the database).
 */
export async function registerRateLimits(app: HttpServer, limits: RateLimits): Promise<{ registerTokenLimits(): void }> {
  // Only the plugin's counting is used; its own hooks would run after ours and only on routes.
  await app.register(rateLimit, { global: false });
  const counter = (max: number, keyGenerator?: (request: FastifyRequest) => string): Counter => {
    const count = app.createRateLimit({ max, timeWindow: WINDOW_MS, ...(keyGenerator ? { keyGenerator } : {}) });
    return async (request) => {
      const state = await count(request);
      return state.isAllowed ? undefined : { max: state.max, remaining: state.remaining, resetSeconds: state.ttlInSeconds, exceeded: state.isExceeded };
    };
  };

  // The plugin's default key is the address, an IPv6 one cut to its /64 (one host's whole range).
  const byAddress = counter(limits.requestsPerAddressPerMinute);
  app.addHook('onRequest', async (request, reply) => {
    const standing = await byAddress(request);
    if (standing) enforce(reply, standing, `more than ${standing.max} requests a minute from this address`);
  });

  return {
    registerTokenLimits() {
      const tokenKey = (request: FastifyRequest) => request.principal?.tokenId ?? '';
      const reads = counter(limits.readsPerMinute, tokenKey);
      const writes = counter(limits.writesPerMinute, tokenKey);
      app.addHook('onRequest', async (request, reply) => {
        if (!request.principal) return; // a public route: the address limit alone
        const read = READS.has(request.method);
        const standing = await (read ? reads : writes)(request);
        if (standing) enforce(reply, standing, `more than ${standing.max} ${read ? 'reads' : 'writes'} a minute with this token`);
      });
    },
  };
}

/** Says the standing in the headers when it is nearer its end than the one already said; 429 past it. */
function enforce(reply: FastifyReply, standing: Standing, exceeded: string): void {
  const said = reply.getHeader('x-ratelimit-remaining');
  if (standing.exceeded || said === undefined || standing.remaining < Number(said)) {
    reply.header('x-ratelimit-limit', standing.max);
    reply.header('x-ratelimit-remaining', standing.remaining);
    reply.header('x-ratelimit-reset', standing.resetSeconds);
  }
  if (!standing.exceeded) return;
  const retryAfterSeconds = Math.max(1, standing.resetSeconds);
  throw new NexusError('rate_limited', exceeded, {
    suggestion: `Retry after ${retryAfterSeconds} s, or spread the calls out.`,
    retryAfterSeconds,
  });
}
