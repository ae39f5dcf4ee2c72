// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { eventually } from '../support/nexus-process.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** The VM API's mechanics, on a manager with no host: VMs are recorded but cannot be placed. */
describe('manager VM API without hosts', () => {
  let manager: TestManager;
  before(async () => {
    manager = await startTestManager({ resyncMs: 500 });
  });
  after(async () => manager?.dispose());

  const url = (path: string) => `${manager.url}${path}`;
  const body = (name: string) => ({ name, vcpu: 1, mem_mib: 128, kernel_path: '/k', rootfs_path: '/r' });

  it('a VM no host can take goes failed with reason no_capacity, saying why', async () => {
    const vm = (await send(url('/v1/vms'), { body: body('homeless') })).body;
    await eventually('failed', async () => (await send(url(`/v1/vms/${vm.id}`))).body.state === 'failed', 10_000);
    const failed = (await send(url(`/v1/vms/${vm.id}`))).body;
    assert.equal(failed.last_error.reason, 'no_capacity');
    assert.match(failed.last_error.message, /no host is ready/);
  });

  it('a retried create with the same Idempotency-Key answers the first VM, not a second', async () => {
    const headers = { 'idempotency-key': 'create-once-1' };
    const first = await send(url('/v1/vms'), { body: body('once'), headers });
    const retry = await send(url('/v1/vms'), { body: body('once'), headers });
    assert.equal(first.status, 201);
    assert.equal(retry.status, 201);
    assert.equal(retry.body.id, first.body.id);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    const named = (await send(url('/v1/vms?name_prefix=once'))).body.items;
    assert.equal(named.length, 1);
    // The same key for another request is refused; a failed request frees its key.
    assertErrorContract(await send(url('/v1/vms'), { body: body('twice'), headers }), 409, 'conflict');
    const failedKey = { 'idempotency-key': 'create-bad-1' };
    assertErrorContract(await send(url('/v1/vms'), { body: body('once'), headers: failedKey }), 409, 'conflict');
    assert.equal((await send(url('/v1/vms'), { body: body('once-b'), headers: failedKey })).status, 201, 'a failed request freed its key');
  });

  it('If-Match with a stale ETag -> 412, with the current one -> accepted', async () => {
    const vm = (await send(url('/v1/vms'), { body: { ...body('etag'), desired_state: 'stopped' } })).body;
    const read = await send(url(`/v1/vms/${vm.id}`));
    const etag = read.headers.get('etag') ?? '';
    assert.match(etag, /^"\d+"$/);
    assert.equal((await send(url(`/v1/vms/${vm.id}/start`), { method: 'POST', headers: { 'if-match': etag } })).status, 200);
    const stale = await send(url(`/v1/vms/${vm.id}/stop`), { method: 'POST', headers: { 'if-match': etag } });
    assertErrorContract(stale, 412, 'precondition_failed');
    assertErrorContract(await send(url(`/v1/vms/${vm.id}/stop`), { method: 'POST', headers: { 'if-match': 'yesterday' } }), 400, 'validation_failed');
    assertErrorContract(await send(url(`/v1/vms/${vm.id}`), { method: 'DELETE', headers: { 'if-match': etag } }), 412, 'precondition_failed');
  });

  it('bulk actions answer per VM', async () => {
    const a = (await send(url('/v1/vms'), { body: { ...body('bulk-a'), desired_state: 'stopped' } })).body;
    const missing = '00000000-0000-4000-8000-000000000000';
    const response = await send(url('/v1/vms/actions'), { body: { ids: [a.id, missing], action: 'pause' } });
    assert.equal(response.status, 200);
    assert.equal(response.body.results[0].ok, false);
    assert.equal(response.body.results[0].error, 'conflict');
    assert.deepEqual(response.body.results[1], { id: missing, ok: false, error: 'not_found', fault_message: `no VM ${missing}` });
    const deleted = await send(url('/v1/vms/actions'), { body: { ids: [a.id], action: 'delete' } });
    assert.deepEqual(deleted.body.results, [{ id: a.id, ok: true }]);
    assertErrorContract(await send(url('/v1/vms/actions'), { body: { ids: [], action: 'start' } }), 400, 'validation_failed');
    assertErrorContract(await send(url('/v1/vms/actions'), { body: { ids: [a.id], action: 'explode' } }), 400, 'validation_failed');
  });

  it('wait blocks until a state, or answers 408 with the current one', async () => {
    const vm = (await send(url('/v1/vms'), { body: body('waiter') })).body;
    const timedOut = await send(url(`/v1/vms/${vm.id}/wait?state=running&timeout=1`));
    assertErrorContract(timedOut, 408, 'timeout');
    assert.match(timedOut.body.fault_message, /is (requested|failed), not running/);
    const failed = await send(url(`/v1/vms/${vm.id}/wait?state=failed&timeout=10`));
    assert.equal(failed.status, 200);
    assert.equal(failed.body.state, 'failed');
    assertErrorContract(await send(url(`/v1/vms/${vm.id}/wait?state=flying`)), 400, 'validation_failed');
  });

  it('production mode refuses raw host paths with 403', async () => {
    const production = await startTestManager({ mode: 'production' });
    try {
      const response = await send(`${production.url}/v1/vms`, { body: body('raw') });
      assertErrorContract(response, 403, 'forbidden');
      assert.match(response.body.fault_message, /dev mode only/);
    } finally {
      await production.dispose();
    }
  });
});
