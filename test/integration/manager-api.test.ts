// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CAPACITY } from './store-suite.js';
import { assertErrorContract } from '../support/error-contract.js';
import { eventually } from '../support/nexus-process.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';
/** What a loaded 2-core machine may add before the sweep's change is seen. */
const LOADED_MACHINE_MARGIN_MS = 10_000;

/**
 * A host stays ready this long after its last heartbeat: far longer than the few calls a test
 * makes meanwhile on a loaded machine. Lateness is made by moving the last heartbeat into the
 * past, not by waiting; the liveness sweep runs every third of this.
 */
const HEARTBEAT_TIMEOUT_MS = 9000;
const HEARTBEAT_INTERVAL_MS = 3000;

describe('manager API', () => {
  let manager: TestManager;
  before(async () => {
    manager = await startTestManager({ heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS });
  });
  after(async () => manager?.dispose());

  const url = (path: string) => `${manager.url}${path}`;
  const mint = async () => (await send(url('/v1/hosts/join-tokens'), { body: {} })).body.token as string;
  const enroll = (token: string, name = 'host-a') =>
    send(url('/v1/hosts/enroll'), { body: { join_token: token, name, address: '127.0.0.1:9999', capacity: CAPACITY } });

  describe('error contract', () => {
    it('malformed JSON -> 400 malformed_json', async () => {
      assertErrorContract(
        await send(url('/v1/hosts/join-tokens'), { raw: '{"ttl_seconds": ', headers: { 'content-type': 'application/json' } }),
        400,
        'malformed_json',
      );
    });
    it('an empty JSON body -> 400 malformed_json', async () => {
      assertErrorContract(
        await send(url('/v1/hosts/join-tokens'), { method: 'POST', raw: '', headers: { 'content-type': 'application/json' } }),
        400,
        'malformed_json',
      );
    });
    it('a wrong type is not coerced -> 400 validation_failed naming the field', async () => {
      const response = await send(url('/v1/hosts/join-tokens'), { body: { ttl_seconds: '3600' } });
      assertErrorContract(response, 400, 'validation_failed');
      assert.match(response.body.fault_message, /ttl_seconds must be integer/);
    });
    it('an out-of-range value -> 400 validation_failed', async () => {
      assertErrorContract(await send(url('/v1/hosts/join-tokens'), { body: { ttl_seconds: 5 } }), 400, 'validation_failed');
    });
    it('an unknown field is rejected, not silently dropped', async () => {
      const response = await send(url('/v1/hosts/join-tokens'), { body: { ttl_seconds: 600, colour: 'red' } });
      assertErrorContract(response, 400, 'validation_failed');
      assert.match(response.body.fault_message, /unknown field 'colour'/);
    });
    it('an unknown nested field is rejected too', async () => {
      const response = await send(url('/v1/hosts/enroll'), {
        body: { join_token: 'x', name: 'n', address: 'a:1', capacity: { ...CAPACITY, extra: 1 } },
      });
      assertErrorContract(response, 400, 'validation_failed');
      assert.match(response.body.fault_message, /body\.capacity has unknown field 'extra'/);
    });
    it('an oversize body -> 413', async () => {
      const response = await send(url('/v1/hosts/join-tokens'), {
        raw: JSON.stringify({ pad: 'x'.repeat(1_100_000) }),
        headers: { 'content-type': 'application/json' },
      });
      assertErrorContract(response, 413, 'payload_too_large');
    });
    it('a body that is not JSON -> 415', async () => {
      const response = await send(url('/v1/hosts/join-tokens'), { raw: 'ttl=5', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      assertErrorContract(response, 415, 'unsupported_media_type');
      assert.match(response.body.fault_message, /x-www-form-urlencoded/);
    });
    it('an unknown route -> 404 route_not_found', async () => {
      assertErrorContract(await send(url('/v1/nothing-here')), 404, 'route_not_found');
    });
    it('a known path with the wrong method -> 405 with Allow', async () => {
      const response = await send(url('/v1/hosts'), { method: 'DELETE' });
      assertErrorContract(response, 405, 'method_not_allowed');
      assert.equal(response.headers.get('allow'), 'GET, HEAD');
    });
    it('an unknown id -> 404 not_found', async () => {
      assertErrorContract(await send(url(`/v1/hosts/${UNKNOWN_ID}`)), 404, 'not_found');
    });
    it('an id that is not a UUID -> 400', async () => {
      assertErrorContract(await send(url('/v1/hosts/not-a-uuid')), 400, 'validation_failed');
    });
    it('echoes a caller-supplied request id', async () => {
      const response = await send(url('/v1/nothing'), { headers: { 'x-request-id': 'trace-me-123' } });
      assert.equal(response.body.request_id, 'trace-me-123');
      assert.ok(manager.logs.some((line) => line.request_id === 'trace-me-123' && line.msg === 'request' && line.status === 404));
    });
  });

  describe('enrollment', () => {
    it('a join token admits one host, and a replay is refused with 401 and an audit-worthy log line', async () => {
      const token = await mint();
      assert.match(token, /^nxjt_[A-Za-z0-9_-]{43}$/, 'at least 256 bits, URL-safe');
      const first = await enroll(token);
      assert.equal(first.status, 201);
      assert.match(first.body.credential, /^nxhc_/);

      const replay = await enroll(token, 'host-b');
      assertErrorContract(replay, 401, 'join_token_invalid');
      const line = manager.logs.find((entry) => entry.event === 'enrollment_rejected' && entry.host_name === 'host-b');
      assert.ok(line, 'the rejection is logged');
      assert.equal(line.reason, 'used');
      assert.equal(line.level, 'warn');
      assert.ok(!JSON.stringify(manager.logs).includes(token), 'the token itself is never logged');
    });
    it('an unknown join token -> 401', async () => {
      assertErrorContract(await enroll('nxjt_made-up'), 401, 'join_token_invalid');
    });
    it('an expired join token -> 401', async () => {
      const token = await mint();
      await manager.database.db
        .updateTable('join_token')
        .set({ expires_at: new Date(Date.now() - 1000) })
        .execute();
      assertErrorContract(await enroll(token, 'host-late'), 401, 'join_token_invalid');
      assert.equal(manager.logs.find((entry) => entry.event === 'enrollment_rejected' && entry.host_name === 'host-late')?.reason, 'expired');
    });
    it('a heartbeat needs the host credential', async () => {
      const enrolled = (await enroll(await mint(), 'host-hb')).body;
      const path = url(`/v1/hosts/${enrolled.host_id}/heartbeat`);
      const body = { address: '127.0.0.1:9999', capacity: CAPACITY };
      assertErrorContract(await send(path, { body }), 401, 'unauthorized');
      assertErrorContract(await send(path, { body, headers: { authorization: 'Bearer nxhc_wrong' } }), 401, 'unauthorized');
      assertErrorContract(
        await send(url(`/v1/hosts/${UNKNOWN_ID}/heartbeat`), { body, headers: { authorization: `Bearer ${enrolled.credential}` } }),
        401,
        'unauthorized',
      );
      const ok = await send(path, { body, headers: { authorization: `Bearer ${enrolled.credential}` } });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.heartbeat_interval_ms, HEARTBEAT_INTERVAL_MS);
    });
  });

  describe('health', () => {
    it('readyz answers 503 until a host is ready, 200 while one is, and 503 once its heartbeats stop', async () => {
      await manager.database.db.updateTable('host').set({ status: 'unreachable' }).execute();
      assertErrorContract(await send(url('/readyz')), 503, 'not_ready');

      const enrolled = (await enroll(await mint(), 'host-ready')).body;
      const ready = await send(url('/readyz'));
      assert.equal(ready.status, 200);
      assert.deepEqual(ready.body, { status: 'ready', database: 'ok', ready_hosts: 1 });
      const listed = (await send(url('/v1/hosts'))).body.items.find((host: { id: string }) => host.id === enrolled.host_id);
      assert.equal(listed.status, 'ready');
      assert.deepEqual(listed.capacity, CAPACITY);
      assert.ok(!('credential' in listed), 'the credential is never listed');

      // Its heartbeats stopped a timeout ago: the next liveness sweep marks it unreachable.
      await manager.database.db
        .updateTable('host')
        .set({ last_seen_at: new Date(Date.now() - HEARTBEAT_TIMEOUT_MS - 1000) })
        .where('id', '=', enrolled.host_id)
        .execute();
      await eventually(
        'the liveness sweep marks the silent host unreachable',
        async () => (await send(url(`/v1/hosts/${enrolled.host_id}`))).body.status === 'unreachable',
        HEARTBEAT_TIMEOUT_MS / 3 + LOADED_MACHINE_MARGIN_MS,
      );
      assertErrorContract(await send(url('/readyz')), 503, 'not_ready');
    });
    it('healthz answers without the database', async () => {
      assert.deepEqual((await send(url('/healthz'))).body, { status: 'ok' });
    });
    it('metrics count requests by route template and status', async () => {
      await send(url(`/v1/hosts/${UNKNOWN_ID}`));
      const text = (await send(url('/metrics'))).body as string;
      assert.match(text, /# TYPE nexus_manager_http_requests_total counter/);
      assert.match(text, /nexus_manager_http_requests_total\{method="GET",route="\/v1\/hosts\/:id",status="404"\} [1-9]/);
      assert.match(text, /nexus_manager_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/v1\/hosts\/:id",status="404"\}/);
      assert.doesNotMatch(text, new RegExp(UNKNOWN_ID), 'raw URLs never become labels');
    });
    it('openapi.json describes every API route from the same schemas that validate', async () => {
      const doc = (await send(url('/openapi.json'))).body;
      assert.equal(doc.openapi, '3.0.3');
      for (const path of ['/v1/hosts', '/v1/hosts/{id}', '/v1/hosts/join-tokens', '/v1/hosts/enroll', '/v1/hosts/{id}/heartbeat', '/healthz', '/readyz']) {
        assert.ok(doc.paths[path], `${path} is documented`);
      }
      const body = doc.paths['/v1/hosts/join-tokens'].post.requestBody.content['application/json'].schema;
      assert.equal(body.additionalProperties, false);
      assert.equal(body.properties.ttl_seconds.minimum, 60);
    });
  });
});
