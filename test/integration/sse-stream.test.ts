// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { type HttpServer, createHttpServer, listenOn } from '../../src/http/http-server.js';
import { SseStream } from '../../src/http/sse.js';
import { openEventStream } from '../support/sse-client.js';

/**
 * Every event stream is watched by its request's access guard: when the guard names a reason, a
 * last `end` event says it and the stream closes, whatever the route was doing (writing its own
 * events, or relaying another server's stream half-way through one of its events). A guard that
 * cannot tell (throws) does not end it, unless it cannot for longer than the watch's limit.
 */
describe('SseStream and its guard', () => {
  let app: HttpServer;
  let base: string;
  /** What each stream's guard answers, by the `x-case` header of its request. */
  const verdicts = new Map<string, () => Promise<string | undefined>>();
  const upstreams = new Map<string, PassThrough>();

  before(async () => {
    app = await createHttpServer({ logger: pino({ level: 'silent' }), metricsPrefix: 'sse_test' });
    app.addHook('onRequest', async (request) => {
      const verdict = verdicts.get(String(request.headers['x-case']));
      if (verdict) request.accessGuard = verdict;
    });
    app.get('/own', async (request, reply) => {
      // Checked every 100 ms, and unverified for 1 s at most, so the test takes no 30 s.
      const stream = new SseStream(request, reply, {
        watch: { everyMs: 100, unverifiedLimitMs: String(request.headers['x-case']).startsWith('bounded') ? 1000 : 60_000 },
      });
      stream.send({ event: 'hello', data: 'first' });
      await new Promise<void>((resolve) => stream.closed.addEventListener('abort', () => resolve(), { once: true }));
    });
    app.get('/relayed', async (request, reply) => {
      const upstream = upstreams.get(String(request.headers['x-case'])) ?? new PassThrough();
      const stream = new SseStream(request, reply);
      stream.closed.addEventListener('abort', () => upstream.destroy());
      await stream.relay(upstream).catch(() => undefined);
      stream.end();
    });
    base = `http://127.0.0.1:${(await listenOn(app, { host: '127.0.0.1', port: 0 })).port}`;
  });
  after(async () => app?.close());

  it('ends a stream with a last `end` event carrying the reason once its guard names one, and closes it', async () => {
    let asked = 0;
    verdicts.set('own', async () => (++asked >= 2 ? 'forbidden' : undefined));
    const stream = await openEventStream(`${base}/own`, { 'x-case': 'own' });
    try {
      assert.equal((await stream.next())?.data, 'first');
      const last = await stream.next(10_000);
      assert.equal(last?.event, 'end');
      assert.deepEqual(JSON.parse(last?.data ?? '{}'), { reason: 'forbidden' });
      assert.equal(await stream.next(5_000), undefined, 'the server closed the stream after its end event');
      assert.ok(asked >= 2, `the guard was asked until it answered (${asked} times)`);
    } finally {
      stream.close();
    }
  });

  it('a guard that cannot tell for a while (the database away) keeps the stream, which ends on the refusal that follows', async () => {
    let asked = 0;
    verdicts.set('transient', async () => {
      asked++;
      if (asked <= 5) throw new Error('database away');
      return asked >= 8 ? 'token_revoked' : undefined;
    });
    const stream = await openEventStream(`${base}/own`, { 'x-case': 'transient' });
    try {
      assert.equal((await stream.next())?.data, 'first');
      const last = await stream.next(10_000);
      assert.deepEqual(JSON.parse(last?.data ?? '{}'), { reason: 'token_revoked' }, 'not access_unverified: the failed checks did not end it');
      assert.ok(asked >= 8, `asked again after each failure (${asked} times)`);
    } finally {
      stream.close();
    }
  });

  it('a guard that cannot tell for longer than the limit ends the stream as access_unverified (an unchecked caller is not served on)', async () => {
    let asked = 0;
    verdicts.set('bounded', async () => {
      asked++;
      throw new Error('database away');
    });
    const stream = await openEventStream(`${base}/own`, { 'x-case': 'bounded' });
    try {
      assert.equal((await stream.next())?.data, 'first');
      assert.deepEqual(JSON.parse((await stream.next(10_000))?.data ?? '{}'), { reason: 'access_unverified' });
      assert.equal(await stream.next(5_000), undefined, 'closed');
      assert.ok(asked >= 5, `it kept asking until the limit (${asked} times)`);
    } finally {
      stream.close();
    }
  });

  it('a relayed stream passes whole events only, so the last `end` never lands inside one of the upstream', async () => {
    const upstream = new PassThrough();
    upstreams.set('relay', upstream);
    let allowed = true;
    verdicts.set('relay', async () => (allowed ? undefined : 'token_revoked'));
    const stream = await openEventStream(`${base}/relayed`, { 'x-case': 'relay' });
    try {
      upstream.write('id: 10\ndata: one whole line\n\nid: 20\ndata: half of a li');
      assert.deepEqual(await stream.next(), { event: 'message', id: '10', data: 'one whole line' });
      allowed = false;
      const last = await stream.next(10_000);
      assert.equal(last?.event, 'end', `the end event came whole, not glued to the half event: ${JSON.stringify(last)}`);
      assert.deepEqual(JSON.parse(last?.data ?? '{}'), { reason: 'token_revoked' });
      assert.equal(await stream.next(5_000), undefined, 'closed');
      assert.ok(upstream.destroyed, 'the upstream is stopped with the stream');
    } finally {
      stream.close();
    }
  });

  it('a relayed stream that ends by itself ends the answer, without an end event of ours', async () => {
    const upstream = new PassThrough();
    upstreams.set('finite', upstream);
    const stream = await openEventStream(`${base}/relayed`, { 'x-case': 'finite' });
    try {
      upstream.end('data: only\n\nevent: end\ndata: {"reason":"vm_deleted"}\n\n');
      assert.equal((await stream.next())?.data, 'only');
      assert.deepEqual(await stream.next(), { event: 'end', id: undefined, data: '{"reason":"vm_deleted"}' });
      assert.equal(await stream.next(5_000), undefined, 'closed');
    } finally {
      stream.close();
    }
  });
});
