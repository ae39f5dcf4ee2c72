import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Type } from 'typebox';
import { Secret, SecretAnswer } from '../../../../src/contracts/secret-answer.js';
import { createHttpServer } from '../../../../src/http/http-server.js';
import { registerIdempotency } from '../../../../src/manager/http/idempotency.js';
import type { IdempotencyClaim, IdempotencyRepo } from '../../../../src/manager/ports/idempotency-repo.js';
import { captureLogger } from '../../../support/capture-logger.js';

/** The idempotency table in memory: what it keeps is what a database dump would show. */
class MemoryIdempotency implements IdempotencyRepo {
  readonly rows = new Map<string, { hash: string; status?: number; response?: unknown }>();
  async claim(key: string, requestHash: string): Promise<IdempotencyClaim> {
    const row = this.rows.get(key);
    if (!row) {
      this.rows.set(key, { hash: requestHash });
      return { kind: 'claimed' };
    }
    if (row.hash !== requestHash) return { kind: 'mismatch' };
    return row.status === undefined ? { kind: 'in_progress' } : { kind: 'replay', statusCode: row.status, response: row.response };
  }
  async complete(key: string, statusCode: number, response: unknown): Promise<void> {
    const row = this.rows.get(key);
    if (row) Object.assign(row, { status: statusCode, response: JSON.parse(JSON.stringify(response)) });
  }
  async release(key: string): Promise<void> {
    this.rows.delete(key);
  }
  async prune(): Promise<number> {
    return 0;
  }
}

const Minted = Type.Object({ id: Type.String(), key: Secret('A key') }, { additionalProperties: false });

async function server(store: IdempotencyRepo) {
  const app = await createHttpServer({ logger: captureLogger().log, metricsPrefix: 'test' });
  registerIdempotency(app, store);
  return app;
}

describe('idempotency and minted secrets', () => {
  it('keeps a replayable answer without its secret, and a replay says the secret was withheld and how to get another', async () => {
    const store = new MemoryIdempotency();
    const app = await server(store);
    let minted = 0;
    app.post('/keys', { schema: { response: { 201: SecretAnswer(Minted, ['key'], 'Rotate it: POST /keys/:id/rotate.') } } }, async (_request, reply) =>
      reply.status(201).send({ id: 'k1', key: `secret-${++minted}` }),
    );
    const call = () => app.inject({ method: 'POST', url: '/keys', headers: { 'idempotency-key': 'once', 'content-type': 'application/json' }, payload: '{}' });

    const first = await call();
    assert.equal(first.statusCode, 201);
    assert.deepEqual(first.json(), { id: 'k1', key: 'secret-1' });
    assert.ok(!JSON.stringify([...store.rows.values()]).includes('secret-1'), 'the stored answer holds no secret');

    const replay = await call();
    assert.equal(replay.statusCode, 201);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal(minted, 1, 'nothing was minted again');
    assert.deepEqual(replay.json(), {
      id: 'k1',
      secret_withheld: {
        fields: ['key'],
        fault_message: 'key was shown once, in the first answer to this request, and is not kept anywhere',
        suggestion: 'Rotate it: POST /keys/:id/rotate.',
      },
    });
    await app.close();
  });

  it('refuses to register a route that answers a Secret field without declaring it with SecretAnswer', async () => {
    const app = await server(new MemoryIdempotency());
    assert.throws(
      () => app.post('/leaky', { schema: { response: { 200: Minted } } }, async () => ({ id: 'x', key: 'y' })),
      /POST \/leaky answers 200 with secret field\(s\) key but does not declare it with SecretAnswer\(\)/,
    );
    assert.throws(
      () => app.post('/leaky-union', { schema: { response: { 201: Type.Union([Minted, Type.Null()]) } } }, async () => null),
      /secret field\(s\) key/,
    );
    await app.close();
  });

  it('SecretAnswer takes only fields declared with Secret()', () => {
    assert.throws(() => SecretAnswer(Minted, ['id'], 'x'), /id is not a Secret\(\) field/);
  });
});
