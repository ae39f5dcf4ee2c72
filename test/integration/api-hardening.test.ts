// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** Rate limits per token (reads and writes apart), CORS by exact allow-list, idempotency keys per caller. */
describe('API hardening', () => {
  let manager: TestManager;
  let other: string;
  let third: string;
  const url = (path: string) => `${manager.url}${path}`;
  const as = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

  before(async () => {
    // The admin token's four writes: two tokens here, and a request and its replay below.
    manager = await startTestManager({ readsPerMinute: 5, writesPerMinute: 4 });
    other = (await send(url('/v1/tokens'), { body: { owner: 'other', role: 'admin' } })).body.token;
    third = (await send(url('/v1/tokens'), { body: { owner: 'third', role: 'admin' } })).body.token;
  });
  after(async () => manager?.dispose());

  it('counts reads and writes per token, says so on every answer, and answers 429 with Retry-After past the limit', async () => {
    const first = await send(url('/v1/vms'), { headers: as(other) });
    assert.equal(first.headers.get('x-ratelimit-limit'), '5');
    assert.equal(first.headers.get('x-ratelimit-remaining'), '4');
    assert.ok(Number(first.headers.get('x-ratelimit-reset')) > 0);
    for (let i = 0; i < 4; i++) assert.equal((await send(url('/v1/vms'), { headers: as(other) })).status, 200);
    const limited = await send(url('/v1/vms'), { headers: as(other) });
    assertErrorContract(limited, 429, 'rate_limited');
    assert.ok(limited.body.retry_after > 0 && limited.body.retry_after <= 60);
    assert.equal(limited.headers.get('retry-after'), String(limited.body.retry_after));
    assert.equal(limited.headers.get('x-ratelimit-remaining'), '0');

    // Writes have their own budget, and another token its own.
    const write = () => send(url('/v1/projects'), { headers: as(other), body: { name: `p${Math.random().toString(36).slice(2, 8)}` } });
    for (let i = 0; i < 4; i++) assert.equal((await write()).status, 201);
    assertErrorContract(await write(), 429, 'rate_limited');
    assert.equal((await send(url('/v1/vms'))).status, 200, "the admin token's budget is its own");
    assert.equal((await send(url('/healthz'))).status, 200);
    for (let i = 0; i < 10; i++) assert.equal((await send(url('/healthz'), { anonymous: true })).status, 200, 'health checks are not limited');
  });

  it('an Idempotency-Key is per caller: the same key from another token is another request', async () => {
    const headers = { 'idempotency-key': 'shared-key' };
    const mine = await send(url('/v1/hosts/join-tokens'), { headers, body: {} });
    const again = await send(url('/v1/hosts/join-tokens'), { headers, body: {} });
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.body.id, mine.body.id, 'the replay answers the same join token');
    assert.equal(again.body.token, undefined, 'without its secret, which was shown once');
    const theirs = await send(url('/v1/hosts/join-tokens'), { headers: { ...headers, ...as(third) }, body: {} });
    assert.equal(theirs.status, 201);
    assert.equal(theirs.headers.get('idempotent-replayed'), null, 'another caller runs its own request');
    assert.notEqual(theirs.body.id, mine.body.id, "another caller never gets the first caller's answer");
    assert.equal(typeof theirs.body.token, 'string', 'and sees its own secret');
  });

  it('CORS: nothing by default; exactly the configured origins when set', async () => {
    const preflight = (target: string, origin: string) =>
      fetch(`${target}/v1/vms`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
      });
    assert.equal((await preflight(manager.url, 'https://console.example.com')).headers.get('access-control-allow-origin'), null);
    const open = await startTestManager({});
    const configured = await startTestManager({}, { NEXUS_CORS_ORIGINS: 'https://console.example.com' });
    try {
      assert.equal((await preflight(open.url, 'https://console.example.com')).headers.get('access-control-allow-origin'), null);
      const allowed = await preflight(configured.url, 'https://console.example.com');
      assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://console.example.com');
      assert.match(allowed.headers.get('access-control-allow-headers') ?? '', /authorization/);
      const stranger = await preflight(configured.url, 'https://evil.example.net');
      assert.equal(stranger.headers.get('access-control-allow-origin'), null);
    } finally {
      await open.dispose();
      await configured.dispose();
    }
  });
});
