// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { eventually } from '../support/nexus-process.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** A bearer naming token `id` with a secret that is not its own. */
const guessAt = (id: string) => `nxat_${id.replaceAll('-', '')}_${randomBytes(32).toString('base64url')}`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The manager's count of slow-hash checks of token secrets, run and refused (the seam: its /metrics registry). */
async function secretChecks(manager: TestManager): Promise<{ hashed: number; refused: number }> {
  const text = await manager.server.metrics.registry.metrics();
  const value = (outcome: string) =>
    Number(new RegExp(`^nexus_manager_token_secret_checks_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { hashed: value('hashed'), refused: value('refused') };
}

async function auditRows(manager: TestManager): Promise<number> {
  const found = await manager.database.db
    .selectFrom('audit')
    .select((eb) => eb.fn.countAll<number>().as('rows'))
    .executeTakeFirstOrThrow();
  return Number(found.rows);
}

function assertLimitHeaders(answer: { status: number; headers: Headers }, what: string): void {
  for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']) {
    const value = answer.headers.get(name);
    assert.ok(value !== null && /^\d+$/.test(value), `${what} (${answer.status}) carries ${name}: got ${value}`);
  }
}

/**
 * Limits that hold before a caller is known: by client address on every request (before the
 * token, the route's validation or the body), and by token id on wrong secrets (before the slow hash).
 */
describe('rate limits before authentication', () => {
  let manager: TestManager;
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    manager = await startTestManager();
  });
  after(async () => manager?.dispose());

  it('150 wrong secrets at one token id: 401 for the first 10, then 429 without running the slow hash', async () => {
    const victim = (await send(url('/v1/tokens'), { body: { owner: 'victim', role: 'admin' } })).body;
    // Its holder used it once before the attack: proven on this manager, it needs no slow hash.
    assert.equal((await send(url('/v1/vms'), { headers: bearer(victim.token) })).status, 200);
    const start = await secretChecks(manager);
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof send>> | undefined;
    for (let i = 0; i < 150; i++) {
      const answer = await send(url('/v1/vms'), { headers: bearer(guessAt(victim.id)) });
      statuses.push(answer.status);
      if (answer.status === 429) limited ??= answer;
    }
    assert.deepEqual(statuses, [...Array(10).fill(401), ...Array(140).fill(429)]);
    assert.ok(limited, 'a 429 was answered');
    assertErrorContract(limited, 429, 'rate_limited');
    assert.ok(limited.body.retry_after > 0 && limited.body.retry_after <= 60, JSON.stringify(limited.body));
    assert.equal(limited.headers.get('retry-after'), String(limited.body.retry_after));
    const end = await secretChecks(manager);
    assert.deepEqual({ hashed: end.hashed - start.hashed, refused: end.refused - start.refused }, { hashed: 10, refused: 140 });
    assert.equal((await send(url('/v1/vms'), { headers: bearer(victim.token) })).status, 200, 'the proven holder is still served');

    // A guessed change turned away this way leaves no audit row: a flood of them would write one each.
    const rows = await auditRows(manager);
    assertErrorContract(await send(url('/v1/projects'), { headers: bearer(guessAt(victim.id)), body: { name: 'guessed' } }), 429, 'rate_limited');
    assert.equal(await auditRows(manager), rows);
  });

  it('guesses sent all at once are counted before the hash runs, so they cannot all slip under the limit', async () => {
    const victim = (await send(url('/v1/tokens'), { body: { owner: 'burst-victim', role: 'admin' } })).body;
    const start = await secretChecks(manager);
    const answers = await Promise.all(Array.from({ length: 40 }, () => send(url('/v1/vms'), { headers: bearer(guessAt(victim.id)) })));
    const end = await secretChecks(manager);
    assert.equal(answers.filter((answer) => answer.status === 401).length, 10, JSON.stringify(answers.map((answer) => answer.status)));
    assert.equal(answers.filter((answer) => answer.status === 429).length, 30);
    assert.equal(end.hashed - start.hashed, 10);
  });

  it("a rotated token's old secret, still in its overlap, is served on without a slow hash each time (never limited)", async () => {
    const minted = (await send(url('/v1/tokens'), { body: { owner: 'rotating', role: 'admin' } })).body;
    assert.equal((await send(url('/v1/vms'), { headers: bearer(minted.token) })).status, 200);
    assert.equal((await send(url(`/v1/tokens/${minted.id}/rotate`), { body: { overlap_seconds: 600 } })).status, 200);
    const start = await secretChecks(manager);
    // Each call after the brief trust (0.5 s) lapses reads the row again, as a busy client's would.
    for (let i = 0; i < 14; i++) {
      assert.equal((await send(url('/v1/vms'), { headers: bearer(minted.token) })).status, 200, `call ${i} with the old secret`);
      await new Promise((resolve) => setTimeout(resolve, 600));
    }
    const end = await secretChecks(manager);
    assert.ok(end.hashed - start.hashed <= 2, `the old secret was hashed ${end.hashed - start.hashed} times, not at every look`);
  });

  it('X-RateLimit-* are on every kind of answer', async () => {
    const project = `p${randomBytes(4).toString('hex')}`;
    const answers: [string, Awaited<ReturnType<typeof send>>, number][] = [
      ['a read', await send(url('/v1/vms')), 200],
      ['a create', await send(url('/v1/projects'), { body: { name: project } }), 201],
      ['no token', await send(url('/v1/vms'), { anonymous: true }), 401],
      ['a wrong token', await send(url('/v1/vms'), { headers: bearer('nxat_nonsense') }), 401],
      ['malformed JSON', await send(url('/v1/projects'), { raw: '{"name":', headers: { 'content-type': 'application/json' } }), 400],
      ['an invalid body', await send(url('/v1/projects'), { body: { name: 'Not A Name' } }), 400],
      ['no such route', await send(url('/v1/nothing-here'), { anonymous: true }), 404],
      ['no such VM', await send(url('/v1/vms/00000000-0000-4000-8000-000000000000')), 404],
      ['a wrong method', await send(url('/v1/vms'), { method: 'PUT' }), 405],
      ['a text body', await send(url('/v1/projects'), { raw: 'hello', headers: { 'content-type': 'text/plain' } }), 415],
      ['a health check', await send(url('/healthz'), { anonymous: true }), 200],
    ];
    for (const [what, answer, status] of answers) {
      assert.equal(answer.status, status, `${what}: ${JSON.stringify(answer.body)}`);
      assertLimitHeaders(answer, what);
    }
  });
});

describe('rate limit by client address', () => {
  let manager: TestManager;
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    manager = await startTestManager({ requestsPerAddressPerMinute: 30 });
  });
  after(async () => manager?.dispose());

  it('counts every request from an address (no token, malformed bodies, health checks) and answers 429 past the limit, before authentication', async () => {
    const rowsBefore = await auditRows(manager);
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) {
      const answer = await send(url('/v1/vms'), { anonymous: true });
      assert.equal(answer.headers.get('x-ratelimit-limit'), '30');
      assert.equal(answer.headers.get('x-ratelimit-remaining'), String(29 - i));
      seen.push(answer.status);
    }
    for (let i = 0; i < 10; i++) seen.push((await send(url('/v1/projects'), { raw: '{', headers: { 'content-type': 'application/json' } })).status);
    for (let i = 0; i < 10; i++) seen.push((await send(url('/healthz'), { anonymous: true })).status);
    assert.deepEqual(seen, [...Array(10).fill(401), ...Array(10).fill(400), ...Array(10).fill(200)]);

    const start = await secretChecks(manager);
    const flood = [
      await send(url('/v1/vms'), { anonymous: true }),
      await send(url('/v1/vms')),
      await send(url('/v1/vms'), { headers: bearer(guessAt('00000000-0000-4000-8000-000000000000')) }),
      await send(url('/v1/projects'), { anonymous: true, body: { name: 'flood' } }),
      await send(url('/healthz'), { anonymous: true }),
      await send(url('/v1/no-route'), { anonymous: true }),
    ];
    for (const answer of flood) {
      assertErrorContract(answer, 429, 'rate_limited');
      assert.equal(answer.headers.get('x-ratelimit-remaining'), '0');
      assert.ok(Number(answer.headers.get('retry-after')) > 0, 'Retry-After says when');
    }
    assert.deepEqual(await secretChecks(manager), start, 'a limited call runs no slow hash');
    // The 10 malformed POSTs were audited; the one the address limit turned away was not.
    assert.equal((await auditRows(manager)) - rowsBefore, 10);
  });
});

describe('rate limit by token', () => {
  let manager: TestManager;
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    manager = await startTestManager({ writesPerMinute: 3 });
  });
  after(async () => manager?.dispose());

  it('a write past the token limit is turned away before it costs a database write: no audit row each, one row for the source', async () => {
    const rowsBefore = await auditRows(manager);
    const statuses: number[] = [];
    for (let i = 0; i < 23; i++) statuses.push((await send(url('/v1/projects'), { body: { name: `limited-${i}` } })).status);
    assert.deepEqual(statuses, [...Array(3).fill(201), ...Array(20).fill(429)]);
    // The first refusal of the source is written at once (and not awaited); the others are counted into one row a minute later.
    const limited = async () => manager.database.db.selectFrom('audit').select(['actor', 'status', 'result', 'detail']).where('status', '=', 429).execute();
    await eventually('the first refusal is audited', async () => (await limited()).length > 0, 5000);
    const rows = await limited();
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.match(rows[0]?.actor ?? '', /^token:[0-9a-f-]{36} \(bootstrap-admin\)$/);
    assert.match(
      rows[0]?.detail ?? '',
      /more than 3 writes a minute with this token; more from token:\S+ \(bootstrap-admin\) at \S+ within 60 s are counted in one row/,
    );
    assert.equal((await auditRows(manager)) - rowsBefore, 4, 'three writes and one refusal');
  });
});
