import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { SECRET_ANSWER, SECRET_FIELD, type SecretAnswerMark, type SecretWithheld } from '../../contracts/secret-answer.js';
import type { HttpServer } from '../../http/http-server.js';
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
 *
 * A secret the first answer minted is never kept: the answer is stored without the fields its
 * route declares with `SecretAnswer`, and with `secret_withheld` saying so, which is what a
 * replay gets. A route whose answer holds a `Secret` field without that declaration is refused
 * when it is registered, so a new secret-minting route cannot leak through here by omission.
 */
export function registerIdempotency(app: HttpServer, store: IdempotencyRepo): void {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const responses = (route.schema?.response ?? {}) as Record<string, Record<string, unknown>>;
    for (const [status, schema] of Object.entries(responses)) {
      if (!/^2/.test(status) || schema[SECRET_ANSWER] !== undefined) continue;
      const secrets = secretFieldsOf(schema);
      if (secrets.length > 0) {
        throw new Error(
          `${methods.join(',')} ${route.url} answers ${status} with secret field(s) ${secrets.join(', ')} but does not declare it with SecretAnswer(): a replay would show the secret again`,
        );
      }
    }
  });

  app.addHook('preHandler', async (request, reply) => {
    const key = request.headers[HEADER];
    if (request.method !== 'POST' || typeof key !== 'string') return;
    if (key.length < 1 || key.length > 255) {
      throw new NexusError('validation_failed', 'Idempotency-Key must be 1 to 255 characters', { suggestion: 'Send a UUID per logical request.' });
    }
    // Keys are the caller's own: another token's request with the same key is another request.
    const scoped = `${request.principal?.tokenId ?? ''}\n${request.routeOptions.url ?? request.url}\n${key}`;
    const hash = createHash('sha256')
      .update(`${request.url}\n${JSON.stringify(request.body ?? null)}`)
      .digest('hex');
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
      const answer: unknown = typeof payload === 'string' ? JSON.parse(payload) : payload;
      await store.complete(key, reply.statusCode, withoutSecrets(request, reply.statusCode, answer));
    } else {
      await store.release(key);
    }
    return payload;
  });
}

/** The answer as it may be kept: the secrets its route declares left out, and `secret_withheld` in their place. */
function withoutSecrets(request: FastifyRequest, statusCode: number, answer: unknown): unknown {
  const responses = (request.routeOptions.schema?.response ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const mark = responses[String(statusCode)]?.[SECRET_ANSWER] as SecretAnswerMark | undefined;
  if (!mark || typeof answer !== 'object' || answer === null) return answer;
  const kept: Record<string, unknown> = { ...(answer as Record<string, unknown>) };
  for (const field of mark.fields) delete kept[field];
  const withheld: SecretWithheld = {
    fields: mark.fields,
    fault_message: `${mark.fields.join(', ')} was shown once, in the first answer to this request, and is not kept anywhere`,
    suggestion: mark.renew,
  };
  return { ...kept, secret_withheld: withheld };
}

/** Top-level fields of an object schema (or of any branch of a union) marked with `Secret()`. */
function secretFieldsOf(schema: Record<string, unknown>): string[] {
  const branches = [schema, ...((schema.anyOf ?? schema.oneOf ?? []) as Array<Record<string, unknown>>)];
  return branches.flatMap((branch) =>
    Object.entries((branch.properties ?? {}) as Record<string, Record<string, unknown>>)
      .filter(([, property]) => property[SECRET_FIELD] === true)
      .map(([name]) => name),
  );
}
