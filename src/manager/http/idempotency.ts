import { createHash } from 'node:crypto';
import type { HttpServer } from '../../kit/http/http-server.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { IdempotencyRepo } from '../ports/idempotency-repo.js';

const HEADER = 'idempotency-key';

declare module 'fastify' {
  interface FastifyRequest {
    idempotencyKey?: string;
  }
}

/**
 * `Idempotency-Key` on every POST, as a hook rather than code in each route: the first request
 * with a key runs and its 2xx answer is kept; a retry with the same key and body gets that answer
 * again (marked `idempotent-replayed: true`) instead of doing the work twice. The same key with
 * another body is refused (422-like conflict); a request that failed frees its key.
 */
export function registerIdempotency(app: HttpServer, store: IdempotencyRepo): void {
  app.addHook('preHandler', async (request, reply) => {
    const key = request.headers[HEADER];
    if (request.method !== 'POST' || typeof key !== 'string') return;
    if (key.length < 1 || key.length > 255) {
      throw new NexusError('validation_failed', 'Idempotency-Key must be 1 to 255 characters', { suggestion: 'Send a UUID per logical request.' });
    }
    // Keys are the caller's own: another token's request with the same key is another request.
    const scoped = `${request.principal?.tokenId ?? ''}\n${request.routeOptions.url ?? request.url}\n${key}`;
    const hash = createHash('sha256').update(`${request.url}\n${JSON.stringify(request.body ?? null)}`).digest('hex');
    const claim = await store.claim(scoped, hash);
    if (claim.kind === 'mismatch') {
      throw new NexusError('conflict', 'this Idempotency-Key was used for a different request', { suggestion: 'Use a new key for a new request.' });
    }
    if (claim.kind === 'in_progress') {
      throw new NexusError('conflict', 'a request with this Idempotency-Key is still being processed', { suggestion: 'Retry in a moment.' });
    }
    if (claim.kind === 'replay') {
      reply.header('idempotent-replayed', 'true');
      return reply.status(claim.statusCode).send(claim.response);
    }
    request.idempotencyKey = scoped;
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const key = request.idempotencyKey;
    if (!key) return payload;
    request.idempotencyKey = undefined;
    if (reply.statusCode >= 200 && reply.statusCode < 300) {
      await store.complete(key, reply.statusCode, typeof payload === 'string' ? JSON.parse(payload) : payload);
    } else {
      await store.release(key);
    }
    return payload;
  });
}
