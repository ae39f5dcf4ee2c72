// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** Routes anyone may call: health, and the agents' own calls (join token, host credential). */
const PUBLIC = new Set(['GET /healthz', 'GET /readyz', 'POST /v1/hosts/enroll', 'POST /v1/hosts/{id}/heartbeat']);
const MUTATING = new Set(['post', 'put', 'patch', 'delete']);

interface Route {
  method: string;
  path: string;
}

/**
 * Tokens, roles and projects, over every route the OpenAPI document lists (so a new route is
 * covered the day it is added): no token -> 401; a viewer's write -> 403; an operator on another
 * project's VM -> 404; an admin -> allowed; and every mutating call leaves an audit row.
 */
describe('access control', () => {
  const dir = tempDir('nexus-access-');
  let manager: TestManager;
  let hollow: HollowAgent;
  const url = (path: string) => `${manager.url}${path}`;
  const tokens: Record<'viewerA' | 'operatorA' | 'operatorB' | 'spare', { id: string; token: string }> = {} as never;
  let vmA: string;
  let netA: string;
  let networksMade = 0;
  let routes: Route[];

  const as = (token: string | undefined): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});
  const call = (route: Route, token: string | undefined, requestId = randomUUID()) =>
    send(url(fill(route.path)), {
      method: route.method.toUpperCase(),
      headers: { ...as(token), 'x-request-id': requestId },
      anonymous: token === undefined,
      ...(bodyFor(route) === undefined ? {} : { body: bodyFor(route) }),
    });

  /** Path parameters: the alpha VM, a spare token (mutations on it are harmless), project alpha. */
  const fill = (path: string) =>
    path
      .replace('/v1/vms/{id}/{action}', `/v1/vms/${vmA}/stop`)
      .replace('/v1/vms/{id}', `/v1/vms/${vmA}`)
      .replace('/v1/networks/{id}', `/v1/networks/${netA}`)
      .replace('/v1/tokens/{id}', `/v1/tokens/${tokens.spare.id}`)
      .replace('{name}', 'alpha')
      .replace('{id}', randomUUID()) + (QUERIES[path]?.() ?? '');
  /** Required queries: alpha-vm's own (it stays `configured`: created stopped, never started). */
  const QUERIES: Record<string, () => string> = {
    '/v1/vms/{id}/wait': () => '?state=configured&timeout=0',
    '/v1/metrics/recent': () => `?id=${vmA}`,
    '/v1/logs/tail': () => `?path=${encodeURIComponent(join(hollow.runDir, 'vms', vmA, 'spec.json'))}`,
  };
  /** A valid body where the route takes one, so an allowed call gets past validation. */
  const bodyFor = (route: Route): unknown => {
    const key = `${route.method.toUpperCase()} ${route.path}`;
    const bodies: Record<string, unknown> = {
      'POST /v1/vms': {
        name: `made-${randomUUID().slice(0, 8)}`,
        vcpu: 1,
        mem_mib: 128,
        kernel_path: hollow.image.kernel,
        rootfs_path: hollow.image.rootfs,
        desired_state: 'stopped',
      },
      'POST /v1/vms/actions': { ids: [vmA], action: 'stop' },
      'POST /v1/networks': { name: `net-${randomUUID().slice(0, 8)}`, cidr: `10.${100 + networksMade++}.0.0/24` },
      'PATCH /v1/networks/{id}': { egress: 'deny' },
      'POST /v1/hosts/join-tokens': {},
      'POST /v1/tokens': { owner: 'table-test', role: 'viewer', project: 'alpha' },
      'POST /v1/tokens/{id}/rotate': { overlap_seconds: 0 },
      'POST /v1/projects': { name: `p-${randomUUID().slice(0, 8)}` },
      'PATCH /v1/projects/{name}': { max_vms: 100 },
      'POST /v1/vms/{id}/snapshots': {},
      'POST /v1/snapshots/{id}/instantiate': { name: `clone-${randomUUID().slice(0, 8)}` },
    };
    return bodies[key];
  };

  before(async () => {
    manager = await startTestManager({ resyncMs: 500 });
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'hollow-access');
    await eventually('the hollow host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
    for (const name of ['alpha', 'beta']) assert.equal((await send(url('/v1/projects'), { body: { name } })).status, 201);
    const mint = async (role: string, project: string) => {
      const minted = await send(url('/v1/tokens'), { body: { owner: `${role}-${project}`, role, project } });
      assert.equal(minted.status, 201, JSON.stringify(minted.body));
      return { id: minted.body.id as string, token: minted.body.token as string };
    };
    tokens.viewerA = await mint('viewer', 'alpha');
    tokens.operatorA = await mint('operator', 'alpha');
    tokens.operatorB = await mint('operator', 'beta');
    tokens.spare = await mint('viewer', 'beta');
    const vm = await send(url('/v1/vms'), {
      headers: as(tokens.operatorA.token),
      body: { name: 'alpha-vm', vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs, desired_state: 'stopped' },
    });
    assert.equal(vm.status, 201, JSON.stringify(vm.body));
    assert.equal(vm.body.project, 'alpha', "an operator's VM goes to its project");
    vmA = vm.body.id;
    const network = await send(url('/v1/networks'), { headers: as(tokens.operatorA.token), body: { name: 'alpha-net', cidr: '10.99.0.0/24' } });
    assert.equal(network.status, 201, JSON.stringify(network.body));
    assert.equal(network.body.project, 'alpha', "an operator's network goes to its project");
    netA = network.body.id;
    // Settled before the walks, so what each route answers does not depend on when it is called.
    await eventually('alpha-vm is configured on its host', async () => (await send(url(`/v1/vms/${vmA}`))).body.state === 'configured');
    const document = (await send(url('/openapi.json'))).body as { paths: Record<string, Record<string, unknown>> };
    routes = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => ({ method, path })));
    assert.ok(routes.length >= 20, `the document lists the routes (${routes.length})`);
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  const guarded = () => routes.filter((route) => !PUBLIC.has(`${route.method.toUpperCase()} ${route.path}`));

  it('no token -> 401 on every route but the public ones', async () => {
    for (const route of guarded()) assertErrorContract(await call(route, undefined), 401, 'unauthorized');
    for (const route of routes.filter((candidate) => PUBLIC.has(`${candidate.method.toUpperCase()} ${candidate.path}`))) {
      assert.notEqual((await call(route, undefined)).status, 401, `${route.method} ${route.path} is public`);
    }
    assertErrorContract(await send(url('/v1/vms'), { headers: as('nxat_not-a-token') }), 401, 'unauthorized');
  });

  it("a viewer's write -> 403 on every mutating route; admin-only reads -> 403", async () => {
    for (const route of guarded().filter((candidate) => MUTATING.has(candidate.method))) {
      assertErrorContract(await call(route, tokens.viewerA.token), 403, 'forbidden');
    }
    for (const path of ['/v1/hosts', '/v1/tokens', '/v1/projects', '/v1/audit'])
      assertErrorContract(await send(url(path), { headers: as(tokens.viewerA.token) }), 403, 'forbidden');
    assert.equal((await send(url(`/v1/vms/${vmA}`), { headers: as(tokens.viewerA.token) })).status, 200, 'a viewer reads its project');
    assert.equal((await send(url('/v1/images'), { headers: as(tokens.viewerA.token) })).status, 200, 'images are shared');
  });

  it("an operator on another project's VM -> 404 on every route that names it; lists show only its project", async () => {
    for (const route of guarded().filter((candidate) => candidate.path.startsWith('/v1/vms/{id}') || candidate.path.startsWith('/v1/networks/{id}'))) {
      assertErrorContract(await call(route, tokens.operatorB.token), 404, 'not_found');
    }
    const bulk = await send(url('/v1/vms/actions'), { headers: as(tokens.operatorB.token), body: { ids: [vmA], action: 'start' } });
    assert.deepEqual(bulk.body.results, [{ id: vmA, ok: false, error: 'not_found', fault_message: `no VM ${vmA}` }]);
    assert.deepEqual((await send(url('/v1/vms'), { headers: as(tokens.operatorB.token) })).body.items, []);
    assert.deepEqual((await send(url('/v1/networks'), { headers: as(tokens.operatorB.token) })).body.items, [], "another project's networks are not listed");
    assert.equal((await send(url('/v1/vms'), { headers: as(tokens.operatorA.token) })).body.items.length >= 1, true);
    const elsewhere = await send(url('/v1/vms'), {
      headers: as(tokens.operatorB.token),
      body: { name: 'sneaky', project: 'alpha', vcpu: 1, mem_mib: 128, kernel_path: '/k', rootfs_path: '/r' },
    });
    assertErrorContract(elsewhere, 404, 'not_found');
  });

  /**
   * What an admin's call of each route answers with the walk's parameters: not merely "not 401 or
   * 403" (a 500 is no permission). Random ids get the route's own 404 (`not_found`, not
   * `route_not_found`); everything else succeeds. A route missing here fails the walk until its
   * answer is written down.
   */
  const ADMIN_ANSWERS: Record<string, number> = {
    'GET /v1/hosts': 200,
    'GET /v1/hosts/{id}': 404,
    'POST /v1/hosts/join-tokens': 201,
    'POST /v1/hosts/{id}/rotate-credential': 404,
    'GET /v1/images': 200,
    'GET /v1/images/{id}': 404,
    'GET /v1/tokens': 200,
    'POST /v1/tokens': 201,
    'POST /v1/tokens/{id}/rotate': 200,
    'DELETE /v1/tokens/{id}': 200,
    'GET /v1/projects': 200,
    'POST /v1/projects': 201,
    'PATCH /v1/projects/{name}': 200,
    'GET /v1/audit': 200,
    'GET /v1/vms': 200,
    'POST /v1/vms': 201,
    'GET /v1/vms/{id}': 200,
    'DELETE /v1/vms/{id}': 200,
    'POST /v1/vms/actions': 200,
    'GET /v1/vms/{id}/wait': 200,
    'GET /v1/vms/{id}/events': 200,
    'POST /v1/vms/{id}/{action}': 200,
    'GET /v1/events': 200,
    'GET /v1/vms/{id}/events/stream': 200,
    'GET /v1/logs/tail': 200,
    'GET /v1/vms/{id}/logs': 200,
    'GET /v1/vms/{id}/metrics/recent': 200,
    'GET /v1/metrics/recent': 200,
    'GET /v1/vms/{id}/logs/stream': 200,
    'GET /v1/networks': 200,
    'POST /v1/networks': 201,
    'GET /v1/networks/{id}': 200,
    'PATCH /v1/networks/{id}': 200,
    // alpha-net has no VM: an admin may delete it (it is the walk's last use of it).
    'DELETE /v1/networks/{id}': 200,
    // alpha-vm is configured, never started: it has no memory to capture.
    'POST /v1/vms/{id}/snapshots': 409,
    'GET /v1/vms/{id}/snapshots': 200,
    'GET /v1/snapshots': 200,
    'GET /v1/snapshots/{id}': 404,
    'DELETE /v1/snapshots/{id}': 404,
    'POST /v1/snapshots/{id}/instantiate': 404,
  };

  /** A stream's answer, its status and type only: its body never ends by itself. */
  const openStream = async (route: Route, token: string, requestId: string) => {
    const abort = new AbortController();
    const response = await fetch(url(fill(route.path)), { headers: { ...as(token), 'x-request-id': requestId }, signal: abort.signal });
    const type = response.headers.get('content-type') ?? '';
    const body = response.ok ? type : await response.json().catch(() => type);
    abort.abort();
    return { status: response.status, headers: response.headers, body };
  };

  it('an admin is allowed everywhere, and every mutating route writes an audit row, a denied call too', async () => {
    // Deletions last, so each route finds alpha-vm and the spare token as the others left them.
    const walk = [...guarded()].sort((a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'));
    for (const route of walk) {
      const key = `${route.method.toUpperCase()} ${route.path}`;
      const expected = ADMIN_ANSWERS[key];
      assert.ok(expected !== undefined, `${key} is a new route: add what an admin's call of it answers to ADMIN_ANSWERS`);
      const requestId = randomUUID();
      const answer = route.path.endsWith('/stream') ? await openStream(route, manager.adminToken, requestId) : await call(route, manager.adminToken, requestId);
      assert.equal(answer.status, expected, `${key}: ${answer.status} ${JSON.stringify(answer.body)}`);
      if (expected === 404) assertErrorContract(answer, 404, 'not_found');
      if (route.path.endsWith('/stream')) assert.match(String(answer.body), /^text\/event-stream/, `${key} answers an event stream`);
      if (!MUTATING.has(route.method)) continue;
      const denied = randomUUID();
      await call(route, tokens.viewerA.token, denied);
      const rows = (await send(url('/v1/audit?limit=10000'))).body.items as Array<{ request_id: string; result: string }>;
      const row = rows.find((entry) => entry.request_id === requestId);
      assert.ok(row, `${route.method} ${route.path} left no audit row`);
      assert.notEqual(row.result, 'pending', `${route.method} ${route.path}: the row was completed`);
      assert.equal(rows.find((entry) => entry.request_id === denied)?.result, 'denied', `${route.method} ${route.path}: the denied call is audited`);
    }
  });

  it("a VM's audit export shows each step with actor, time, request id and result, and a denied attempt", async () => {
    const operator = as(tokens.operatorA.token);
    const created = await send(url('/v1/vms?wait=10'), {
      headers: operator,
      body: { name: 'audited', vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs },
    });
    assert.equal(created.body.state, 'running', JSON.stringify(created.body));
    const id = created.body.id as string;
    for (const action of ['pause', 'resume', 'stop'])
      assert.equal((await send(url(`/v1/vms/${id}/${action}?wait=10`), { method: 'POST', headers: operator })).status, 200, action);
    assertErrorContract(await send(url(`/v1/vms/${id}/start`), { method: 'POST', headers: as(tokens.viewerA.token) }), 403, 'forbidden');
    assert.equal((await send(url(`/v1/vms/${id}?wait=10`), { method: 'DELETE', headers: operator })).status, 200);

    const exported = await fetch(url(`/v1/audit?vm_id=${id}&format=ndjson`), { headers: as(manager.adminToken) });
    assert.equal(exported.headers.get('content-type')?.startsWith('application/x-ndjson'), true);
    const rows = (await exported.text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    assert.deepEqual(
      rows.map((row) => `${row.action} ${row.result}`),
      ['vm.create success', 'vm.pause success', 'vm.resume success', 'vm.stop success', 'vm.start denied', 'vm.delete success'],
    );
    for (const row of rows) {
      assert.match(row.actor, /^token:[0-9a-f-]{36} \((operator|viewer)-alpha\)$/);
      assert.match(row.request_id, /^[0-9a-f-]{36}$/);
      assert.ok(Date.parse(row.created_at) <= Date.parse(row.updated_at));
    }
    assert.equal(rows[1].before.state, 'running', 'before: the state the call found');
    assert.equal(rows[4].actor.includes('viewer-alpha'), true);
    const since = rows[2].created_at;
    const later = (await send(url(`/v1/audit?vm_id=${id}&since=${encodeURIComponent(since)}`))).body.items;
    assert.equal(later.length, 4);
    const byActor = (await send(url(`/v1/audit?actor=${encodeURIComponent(rows[4].actor)}`))).body.items;
    assert.ok(byActor.every((row: { actor: string }) => row.actor === rows[4].actor) && byActor.length >= 1);
  });

  it('the audit log pages newest first with a cursor, since and until narrow it, and the NDJSON export has every entry, oldest first', async () => {
    const minted = await send(url('/v1/tokens'), { body: { owner: 'pager', role: 'viewer', project: 'alpha' } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const actor = `token:${minted.body.id} (pager)`;
    // Seven denied writes, each audited, a few milliseconds apart so each has a time of its own.
    const calls: string[] = [];
    for (let index = 0; index < 7; index++) {
      calls.push(randomUUID());
      assertErrorContract(
        await send(url(`/v1/vms/${vmA}`), { method: 'DELETE', headers: { ...as(minted.body.token), 'x-request-id': calls.at(-1) ?? '' } }),
        403,
        'forbidden',
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    type Entry = { request_id: string; created_at: string };
    const pages = async (query: string) => {
      const seen: Entry[][] = [];
      let cursor: string | null = null;
      do {
        const answer = await send(url(`/v1/audit?actor=${encodeURIComponent(actor)}&${query}${cursor ? `&cursor=${cursor}` : ''}`));
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        seen.push(answer.body.items);
        cursor = answer.body.next_cursor;
        assert.ok(seen.length <= 10, 'the pages end');
      } while (cursor);
      return seen;
    };
    const newestFirst = [...calls].reverse();

    const whole = await pages('');
    assert.deepEqual(
      whole.flat().map((entry) => entry.request_id),
      newestFirst,
      'one page, newest first',
    );
    const paged = await pages('limit=3');
    assert.deepEqual(
      paged.map((page) => page.length),
      [3, 3, 1],
    );
    assert.deepEqual(
      paged.flat().map((entry) => entry.request_id),
      newestFirst,
      'pages go on to older entries, none skipped or repeated',
    );

    const byCall = new Map(whole.flat().map((entry) => [entry.request_id, entry.created_at]));
    const window = `since=${encodeURIComponent(byCall.get(calls[2] ?? '') ?? '')}&until=${encodeURIComponent(byCall.get(calls[5] ?? '') ?? '')}`;
    const narrowed = await pages(`${window}&limit=2`);
    assert.deepEqual(
      narrowed.map((page) => page.length),
      [2, 1],
    );
    assert.deepEqual(
      narrowed.flat().map((entry) => entry.request_id),
      [calls[4], calls[3], calls[2]],
      'since is inclusive, until exclusive',
    );

    const unfiltered = (await send(url('/v1/audit?limit=5'))).body.items as Entry[];
    const times = unfiltered.map((entry) => Date.parse(entry.created_at));
    assert.deepEqual(
      times,
      [...times].sort((a, b) => b - a),
      'without filters too, the newest come first',
    );
    assert.ok((times[0] ?? 0) >= Date.parse(byCall.get(calls[6] ?? '') ?? ''), 'the first page holds the latest entries, not the oldest');

    const exported = async (query: string) => {
      const response = await fetch(url(`/v1/audit?actor=${encodeURIComponent(actor)}&format=ndjson${query}`), { headers: as(manager.adminToken) });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type')?.startsWith('application/x-ndjson'), true);
      return (await response.text())
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as Entry).request_id);
    };
    assert.deepEqual(await exported(''), calls, 'the export holds every entry, oldest first');
    assert.deepEqual(await exported(`&${window}`), calls.slice(2, 5));

    // Paging belongs to the JSON pages: an export refuses it rather than quietly cutting itself short.
    const cursor = (await send(url(`/v1/audit?actor=${encodeURIComponent(actor)}&limit=3`))).body.next_cursor as string | null;
    assert.ok(cursor, 'a first page of three has more after it');
    for (const query of ['format=ndjson&limit=3', `format=ndjson&cursor=${cursor}`]) {
      const refused = await send(url(`/v1/audit?${query}`));
      assertErrorContract(refused, 400, 'validation_failed');
      assert.match(refused.body.suggestion, /since, until/);
    }
    const id = randomUUID();
    // Dates of the cursor's own shape that `Date.parse` takes but the database cannot read back: a 400, not a 500.
    for (const text of ['yesterday|me', `2026-02-30T00:00:00.000000Z|${id}`, `0000-01-01T00:00:00.000000Z|${id}`, `2026-12-31T23:59:60.000000Z|${id}`]) {
      const forged = await send(url(`/v1/audit?cursor=${Buffer.from(text).toString('base64url')}`));
      assertErrorContract(forged, 400, 'validation_failed');
      assert.match(forged.body.fault_message, /cursor is not one this API gave out/);
    }
    assertErrorContract(await send(url('/v1/audit?cursor=not%20base64')), 400, 'validation_failed');
  });
});

/**
 * docs/security.md: a mutating call refused 401 (no token, or one that is not valid) leaves a
 * `denied` row with actor `anonymous`, its status and address; refusals are collapsed per source
 * (actor, address and action): the first of a minute gets its row at once, the rest one row that
 * counts them, written when the minute ends or the manager stops. A manager of its own, so the
 * other tests' refusals from this address do not fill the window first.
 */
describe('audit of calls refused 401', () => {
  const dir = tempDir('nexus-access-401-');
  const dataDir = join(dir.path, 'data');
  let manager: TestManager | undefined;
  after(async () => {
    await manager?.dispose();
    dir.remove();
  });

  type Row = { request_id: string; actor: string; action: string; result: string; status: number | null; remote_address: string | null; detail: string | null };
  const auditRows = async (on: TestManager): Promise<Row[]> => {
    const answer = await send(`${on.url}/v1/audit?limit=10000`, { headers: { authorization: `Bearer ${on.adminToken}` } });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return answer.body.items as Row[];
  };

  it('no token, a malformed, unknown, wrong-secret or revoked token: each a denied row at once; repeats from one source counted into one row, written at stop', async () => {
    manager = await startTestManager({ dataDir });
    const running = manager;
    const minted = await send(`${running.url}/v1/tokens`, { body: { owner: 'guessed', role: 'operator', project: 'default' } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const real = minted.body.token as string;
    const wrongSecret = `${real.slice(0, real.lastIndexOf('_') + 1)}${'A'.repeat(43)}`;
    assert.notEqual(wrongSecret, real, 'the secret differs');
    const unknown = `nxat_${randomUUID().replaceAll('-', '')}_${'B'.repeat(43)}`;
    const revokedToken = await send(`${running.url}/v1/tokens`, { body: { owner: 'revoked', role: 'admin' } });
    assert.equal(revokedToken.status, 201, JSON.stringify(revokedToken.body));
    assert.equal((await send(`${running.url}/v1/tokens/${revokedToken.body.id}`, { method: 'DELETE' })).status, 200, 'revoked');

    // One action each: refusals of one action from one address and actor are one source.
    const refused = [
      { what: 'no token', bearer: undefined, path: '/v1/projects', body: { name: 'never-made' }, action: 'project.create' },
      {
        what: 'a malformed token',
        bearer: 'nxat_not-a-token',
        path: '/v1/tokens',
        body: { owner: 'x', role: 'viewer', project: 'default' },
        action: 'token.create',
      },
      { what: 'an unknown token', bearer: unknown, path: '/v1/hosts/join-tokens', body: {}, action: 'host.join_token' },
      {
        what: 'a known token with a wrong secret',
        bearer: wrongSecret,
        path: '/v1/vms',
        body: { name: 'never-made', vcpu: 1, mem_mib: 128, kernel_path: '/k', rootfs_path: '/r' },
        action: 'vm.create',
      },
      {
        what: 'a revoked token',
        bearer: revokedToken.body.token as string,
        path: '/v1/projects/default',
        method: 'PATCH',
        body: { max_vms: 1 },
        action: 'project.quota',
      },
    ].map((call) => ({ ...call, requestId: randomUUID() }));
    for (const call of refused) {
      const answer = await send(`${running.url}${call.path}`, {
        method: call.method ?? 'POST',
        headers: { 'x-request-id': call.requestId, ...(call.bearer ? { authorization: `Bearer ${call.bearer}` } : {}) },
        anonymous: call.bearer === undefined,
        body: call.body,
      });
      assertErrorContract(answer, 401, 'unauthorized');
    }
    // Two more like the first: counted, not itemized.
    const repeats: string[] = [randomUUID(), randomUUID()];
    for (const requestId of repeats) {
      assertErrorContract(
        await send(`${running.url}/v1/projects`, { headers: { 'x-request-id': requestId }, anonymous: true, body: { name: 'never-made' } }),
        401,
        'unauthorized',
      );
    }

    // A refusal's row is written without holding up the 401: wait for it, not for a time.
    let rows: Row[] = [];
    await eventually(
      'each refused call has its audit row',
      async () => {
        rows = await auditRows(running);
        return refused.every((call) => rows.some((row) => row.request_id === call.requestId));
      },
      15_000,
    );
    for (const call of refused) {
      const row = rows.find((entry) => entry.request_id === call.requestId);
      assert.deepEqual(
        { actor: row?.actor, action: row?.action, result: row?.result, status: row?.status, remote_address: row?.remote_address },
        { actor: 'anonymous', action: call.action, result: 'denied', status: 401, remote_address: '127.0.0.1' },
        `${call.what}: ${JSON.stringify(row)}`,
      );
    }
    assert.ok(!rows.some((row) => repeats.includes(row.request_id)), 'repeats within the window get no row of their own');

    // The count is written when the manager stops; the next manager on the data dir reads it.
    await running.dispose();
    manager = undefined;
    manager = await startTestManager({ dataDir }, {}, running.adminToken);
    const counted = (await auditRows(manager)).filter((row) => row.request_id === repeats[1]);
    assert.equal(counted.length, 1, `one row counts the repeats: ${JSON.stringify(counted)}`);
    assert.deepEqual(
      {
        actor: counted[0]?.actor,
        action: counted[0]?.action,
        result: counted[0]?.result,
        status: counted[0]?.status,
        remote_address: counted[0]?.remote_address,
      },
      { actor: 'anonymous', action: 'project.create', result: 'denied', status: 401, remote_address: '127.0.0.1' },
    );
    assert.match(counted[0]?.detail ?? '', /^2 more refused \(.*\) from anonymous at 127\.0\.0\.1 between /, 'it says how many, from whom');
  });
});
