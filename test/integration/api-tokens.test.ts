// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { statSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { eventually } from '../support/nexus-process.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** How long a manager trusts a verified token without reading it again (main.ts, docs/security.md). */
const CACHE_MS = 500;
/** What a loaded 2-core machine may add before a change is seen. */
const LOADED_MACHINE_MARGIN_MS = 10_000;

/** Token lifecycle: bootstrap, revocation, expiry, rotation with and without overlap, quotas. */
describe('API tokens', () => {
  let manager: TestManager;
  const url = (path: string) => `${manager.url}${path}`;
  const as = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
  const works = async (token: string) => (await send(url('/v1/vms'), { headers: as(token) })).status === 200;

  before(async () => {
    manager = await startTestManager();
    assert.equal((await send(url('/v1/projects'), { body: { name: 'team' } })).status, 201);
  });
  after(async () => manager?.dispose());

  const mint = async (extra: Record<string, unknown> = {}) => {
    const minted = await send(url('/v1/tokens'), { body: { owner: 'ci', role: 'operator', project: 'team', ...extra } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    return minted.body as { id: string; token: string };
  };

  it('an empty database gets one admin token, saved for the CLI readable by its owner only; no default password', async () => {
    const file = `${manager.dataDir}/admin.token`;
    assert.equal(readFileSync(file, 'utf8').trim(), manager.adminToken);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const listed = (await send(url('/v1/tokens'))).body.items;
    assert.equal(listed.filter((token: { owner: string }) => token.owner === 'bootstrap-admin').length, 1);
    assert.ok(
      listed.every((token: Record<string, unknown>) => !('token' in token) && !('secret_hash' in token)),
      'no secret is ever listed',
    );
  });

  it('a replayed mint or rotation (same Idempotency-Key) answers the token without its secret, saying so and how to get a new one', async () => {
    const headers = { 'idempotency-key': 'mint-once' };
    const body = { owner: 'ci-replay', role: 'operator', project: 'team' };
    const first = await send(url('/v1/tokens'), { headers, body });
    assert.equal(first.status, 201);
    assert.match(first.body.token, /^nxat_/);
    const replay = await send(url('/v1/tokens'), { headers, body });
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const { secret_withheld: withheld, ...resource } = replay.body;
    const { token: secret, ...shown } = first.body;
    assert.deepEqual(resource, shown, 'the same token, less its secret');
    assert.deepEqual(withheld, {
      fields: ['token'],
      fault_message: 'token was shown once, in the first answer to this request, and is not kept anywhere',
      suggestion: 'POST /v1/tokens/:id/rotate gives the token a new secret (its id is in this answer); DELETE /v1/tokens/:id revokes it.',
    });
    assert.ok(await works(secret), 'the first answer holds the working secret');
    assert.equal((await send(url('/v1/tokens'))).body.items.filter((token: { owner: string }) => token.owner === 'ci-replay').length, 1, 'minted once');

    const rotateHeaders = { 'idempotency-key': 'rotate-once' };
    const rotated = await send(url(`/v1/tokens/${first.body.id}/rotate`), { headers: rotateHeaders, body: {} });
    const again = await send(url(`/v1/tokens/${first.body.id}/rotate`), { headers: rotateHeaders, body: {} });
    assert.equal(again.status, 200);
    assert.equal(again.body.token, undefined);
    assert.deepEqual(again.body.secret_withheld.fields, ['token']);
    assert.ok(await works(rotated.body.token), 'rotated once: the secret of the first answer works');
  });

  it('a revoked token is refused at once by the manager that revoked it; last_used_at is kept', async () => {
    const token = await mint();
    assert.ok(await works(token.token), 'the token works before');
    const used = (await send(url('/v1/tokens'))).body.items.find((entry: { id: string }) => entry.id === token.id);
    assert.ok(used.last_used_at, 'last_used_at recorded');
    assert.equal((await send(url(`/v1/tokens/${token.id}`), { method: 'DELETE' })).status, 200);
    // Its verification was cached a moment ago: the revoking manager drops that entry as it revokes.
    assertErrorContract(await send(url('/v1/vms'), { headers: as(token.token) }), 401, 'unauthorized');
  });

  // The exact windows (expiry and overlap ends, to the millisecond, through the verification cache)
  // are unit-tested with a clock the test moves (test/unit/manager/access-service.test.ts). Here
  // the database's times are moved into the past instead of waiting for them.
  it('an expired token is refused; an expiry in the past is refused at minting', async () => {
    const token = await mint({ expires_at: new Date(Date.now() + 3600_000).toISOString() });
    assert.ok(await works(token.token), 'the token works before its expiry');
    await manager.database.db
      .updateTable('api_token')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', token.id)
      .execute();
    await eventually('the expired token is refused', async () => !(await works(token.token)), CACHE_MS + LOADED_MACHINE_MARGIN_MS);
    assertErrorContract(await send(url('/v1/vms'), { headers: as(token.token) }), 401, 'unauthorized');
    assertErrorContract(
      await send(url('/v1/tokens'), { body: { owner: 'x', role: 'viewer', project: 'team', expires_at: '2020-01-01T00:00:00Z' } }),
      400,
      'validation_failed',
    );
    assertErrorContract(await send(url('/v1/tokens'), { body: { owner: 'x', role: 'viewer' } }), 400, 'validation_failed');
    assertErrorContract(await send(url('/v1/tokens'), { body: { owner: 'x', role: 'viewer', project: 'nowhere' } }), 404, 'not_found');
  });

  it('rotation: the old secret is refused at once, or after the overlap; the new one works', async () => {
    const token = await mint();
    const rotated = (await send(url(`/v1/tokens/${token.id}/rotate`), { body: {} })).body;
    assert.equal(rotated.id, token.id);
    assert.notEqual(rotated.token, token.token);
    assert.ok(await works(rotated.token));
    assert.equal(await works(token.token), false, 'no overlap: the old secret is refused at once');

    const overlapped = (await send(url(`/v1/tokens/${token.id}/rotate`), { body: { overlap_seconds: 3600 } })).body;
    assert.ok(await works(overlapped.token));
    assert.ok(await works(rotated.token), 'the previous secret works during the overlap');
    await manager.database.db
      .updateTable('api_token')
      .set({ previous_valid_until: new Date(Date.now() - 1000) })
      .where('id', '=', token.id)
      .execute();
    await eventually(
      'the previous secret is refused once the overlap has ended',
      async () => !(await works(rotated.token)),
      CACHE_MS + LOADED_MACHINE_MARGIN_MS,
    );
    assert.ok(await works(overlapped.token));
    assertErrorContract(await send(url(`/v1/tokens/00000000-0000-4000-8000-000000000000/rotate`), { body: {} }), 404, 'not_found');
  });

  it('an admin token spans every project: minting one with a project is refused; the bootstrap and rotated admins name none', async () => {
    const scoped = await send(url('/v1/tokens'), { body: { owner: 'team-admin', role: 'admin', project: 'team' } });
    assertErrorContract(scoped, 400, 'validation_failed');
    assert.match(scoped.body.fault_message, /admin token spans every project/);
    assert.match(scoped.body.suggestion, /operator token with project team/);
    const listed = (await send(url('/v1/tokens'))).body.items as Array<{ owner: string; role: string; project: string | null }>;
    assert.equal(
      listed.some((token) => token.owner === 'team-admin'),
      false,
      'nothing was minted',
    );
    assert.equal(listed.find((token) => token.owner === 'bootstrap-admin')?.project, null, 'the first admin token names no project');

    const admin = await send(url('/v1/tokens'), { body: { owner: 'second-admin', role: 'admin' } });
    assert.equal(admin.status, 201, JSON.stringify(admin.body));
    assert.equal(admin.body.project, null);
    const rotated = await send(url(`/v1/tokens/${admin.body.id}/rotate`), { body: {} });
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(rotated.body.project, null, 'rotation keeps the scope');
    assert.equal((await send(url('/v1/projects'), { headers: as(rotated.body.token) })).status, 200, 'the rotated admin acts on every project');
  });

  it('project quotas refuse a VM past them with 403, naming the quota', async () => {
    const token = await mint();
    assert.equal((await send(url('/v1/projects/team'), { method: 'PATCH', body: { max_vms: 1, max_memory_mib: 256 } })).status, 200);
    const create = (name: string, memMib = 128) =>
      send(url('/v1/vms'), {
        headers: as(token.token),
        body: { name, vcpu: 1, mem_mib: memMib, kernel_path: '/k', rootfs_path: '/r', desired_state: 'stopped' },
      });
    assert.equal((await create('first')).status, 201);
    const over = await create('second');
    assertErrorContract(over, 403, 'quota_exceeded');
    assert.match(over.body.fault_message, /max_vms 1/);
    assert.equal((await send(url('/v1/projects/team'), { method: 'PATCH', body: { max_vms: null } })).status, 200);
    const memory = await create('big', 200);
    assertErrorContract(memory, 403, 'quota_exceeded');
    assert.match(memory.body.fault_message, /max_memory_mib 256/);
    assert.equal((await create('small', 128)).status, 201);
    assertErrorContract(await send(url('/v1/projects/nowhere'), { method: 'PATCH', body: { max_vms: 1 } }), 404, 'not_found');
    assertErrorContract(await send(url('/v1/projects'), { body: { name: 'team' } }), 409, 'conflict');
  });
});

/**
 * docs/security.md: "a revocation reaches every manager within a second". The manager that did
 * not revoke learns it only from the database, once its brief trust (0.5 s) in the token lapses.
 */
describe('API tokens on two managers sharing one Postgres', () => {
  let postgres: PostgresServer;
  let managers: TestManager[] = [];

  before(async () => {
    postgres = await startPostgres();
    const databaseUrl = await postgres.createDatabase();
    const first = await startTestManager({ databaseUrl });
    managers = [first, await startTestManager({ databaseUrl, secretKeyFile: first.secretKeyFile }, {}, first.adminToken)];
  });
  after(async () => {
    for (const manager of managers) await manager.dispose();
    await postgres?.stop();
  });

  it('a token revoked through one manager is refused by the other, which had just verified it', async () => {
    const [revoking, other] = managers;
    assert.ok(revoking && other, 'two managers');
    const minted = await send(`${revoking.url}/v1/tokens`, { body: { owner: 'ci', role: 'admin' } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const listVms = (manager: TestManager) => send(`${manager.url}/v1/vms`, { headers: { authorization: `Bearer ${minted.body.token}` } });
    assert.equal((await listVms(other)).status, 200, 'the other manager verified it (and trusts that briefly)');
    assert.equal((await send(`${revoking.url}/v1/tokens/${minted.body.id}`, { method: 'DELETE' })).status, 200);
    assertErrorContract(await listVms(revoking), 401, 'unauthorized');
    await eventually('the other manager refuses it', async () => (await listVms(other)).status === 401, CACHE_MS + LOADED_MACHINE_MARGIN_MS);
    assertErrorContract(await listVms(other), 401, 'unauthorized');
  });
});
