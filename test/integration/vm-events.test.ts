import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { openEventStream } from '../support/sse-client.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** Events across VMs, filtered, and one VM's events as a live stream. */
describe('VM events', () => {
  const dir = tempDir('nexus-events-');
  let manager: TestManager;
  let hollow: HollowAgent;
  const url = (path: string) => `${manager.url}${path}`;
  const vmBody = (name: string, extra: Record<string, unknown> = {}) => ({
    name,
    vcpu: 1,
    mem_mib: 128,
    kernel_path: hollow.image.kernel,
    rootfs_path: hollow.image.rootfs,
    ...extra,
  });

  before(async () => {
    manager = await startTestManager({ resyncMs: 1000 });
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'events-host');
    await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it('GET /v1/events lists every VM\'s events oldest first, filtered by level and time', async () => {
    const started = new Date().toISOString();
    const fine = await send(url('/v1/vms?wait=10'), { body: vmBody('fine') });
    assert.equal(fine.status, 201, JSON.stringify(fine.body));
    // As big as the host: it cannot fit beside 'fine', so placing it fails (an error event).
    const largest = Math.max(...(await manager.hosts.list()).map((host) => host.capacity.memory_mib));
    const huge = await send(url('/v1/vms'), { body: vmBody('huge', { mem_mib: largest }) });
    assert.equal(huge.status, 201, JSON.stringify(huge.body));
    await eventually('the huge VM fails to place', async () => (await send(url(`/v1/vms/${huge.body.id}`))).body.state === 'failed');

    // One structured log line per reconciler action, naming the VM, the step and its result.
    const actionLines = manager.logs.filter((line) => line.msg === 'reconcile action' && line.vm_id === fine.body.id);
    assert.ok(actionLines.some((line) => line.action === 'start' && line.result === 'ok' && typeof line.duration_ms === 'number'), JSON.stringify(actionLines));

    const all = (await send(url(`/v1/events?since=${encodeURIComponent(started)}`))).body.items as any[];
    assert.ok(all.some((event) => event.vm_id === fine.body.id && event.to_state === 'running'), JSON.stringify(all));
    assert.ok(all.some((event) => event.vm_id === huge.body.id && event.level === 'error'));
    for (let i = 1; i < all.length; i++) assert.ok(all[i].created_at >= all[i - 1].created_at, 'oldest first');

    const errors = (await send(url(`/v1/events?since=${encodeURIComponent(started)}&level=error`))).body.items as any[];
    assert.ok(errors.length > 0 && errors.every((event) => event.level === 'error' && event.vm_id === huge.body.id), JSON.stringify(errors));
    const warnings = (await send(url(`/v1/events?since=${encodeURIComponent(started)}&level=warn`))).body.items as any[];
    assert.ok(warnings.every((event) => event.level === 'warn' || event.level === 'error'));
    assert.deepEqual((await send(url(`/v1/events?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`))).body.items, []);
    assert.equal((await send(url(`/v1/events?since=${encodeURIComponent(started)}&limit=1`))).body.items.length, 1);

    assertErrorContract(await send(url('/v1/events?level=debug')), 400, 'validation_failed');
    assertErrorContract(await send(url('/v1/events?since=yesterday')), 400, 'validation_failed');
    assertErrorContract(await send(url('/v1/events?limit=0')), 400, 'validation_failed');
    await send(url(`/v1/vms/${huge.body.id}?wait=10`), { method: 'DELETE' });
    await send(url(`/v1/vms/${fine.body.id}?wait=10`), { method: 'DELETE' });
  });

  it("a VM's event stream sends its history, then each new event; Last-Event-ID resumes; deletion ends it", async () => {
    const vm = (await send(url('/v1/vms?wait=10'), { body: vmBody('streamed') })).body;
    const stream = await openEventStream(url(`/v1/vms/${vm.id}/events/stream`));
    let lastId: string | undefined;
    let firstId: string | undefined;
    try {
      assert.equal(stream.status, 200);
      const history = await stream.until((event) => JSON.parse(event.data).to_state === 'running', 10_000);
      assert.ok(history.every((event) => event.event === 'vm_event' && event.id));
      lastId = history.at(-1)?.id;
      firstId = history[0]?.id;
      assert.equal((await send(url(`/v1/vms/${vm.id}/stop`), { method: 'POST' })).status, 200);
      const stopping = await stream.until((event) => JSON.parse(event.data).to_state === 'stopped', 10_000);
      assert.ok(stopping.length > 0);
    } finally {
      stream.close();
    }

    // A Last-Event-ID whose date the database cannot read (year 0000, which `Date` takes) is not one
    // of ours: the stream starts from the history, as without one, instead of failing with a 500.
    for (const at of ['0000-01-01T00:00:00Z', '2026-02-30T00:00:00Z']) {
      const foreign = await openEventStream(url(`/v1/vms/${vm.id}/events/stream`), { 'last-event-id': `${at}|${vm.id}` });
      try {
        assert.equal(foreign.status, 200, `Last-Event-ID at ${at}`);
        assert.equal((await foreign.next(5000))?.id, firstId, `Last-Event-ID at ${at}: the history from its start`);
      } finally {
        foreign.close();
      }
    }

    // Resuming after the running event starts with what came next, the stop, not the history again.
    const resumed = await openEventStream(url(`/v1/vms/${vm.id}/events/stream`), { 'last-event-id': lastId ?? '' });
    try {
      const first = await resumed.next(5000);
      assert.ok(first && JSON.parse(first.data).to_state !== 'running' && first.id !== lastId, JSON.stringify(first));
      assert.equal((await send(url(`/v1/vms/${vm.id}?wait=10`), { method: 'DELETE' })).status, 200);
      const end = await resumed.until((event) => event.event === 'end', 10_000);
      assert.deepEqual(JSON.parse(end.at(-1)!.data), { reason: 'vm_deleted' });
      assert.equal(await resumed.next(5000), undefined, 'closed after the end event');
    } finally {
      resumed.close();
    }
    assertErrorContract(await send(url(`/v1/vms/${vm.id}/events/stream`)), 404, 'not_found');
  });
});
