// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { type EventStream, type SseEvent, openEventStream } from '../support/sse-client.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/**
 * Events across VMs, filtered, and one VM's events as a live stream, on each database: Postgres
 * keeps microseconds where the embedded one (and a Date) keep milliseconds, which a stream's
 * cursor must survive.
 */
for (const database of ['embedded', 'postgres'] as const) describeVmEvents(database);

function describeVmEvents(database: 'embedded' | 'postgres'): void {
  describe(`VM events (${database} database)`, () => {
    const dir = tempDir('nexus-events-');
    let postgres: PostgresServer | undefined;
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
      if (database === 'postgres') postgres = await startPostgres();
      manager = await startTestManager({ resyncMs: 1000, ...(postgres ? { databaseUrl: await postgres.createDatabase() } : {}) });
      hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'events-host');
      await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
    });
    after(async () => {
      await hollow?.agent.close();
      await manager?.dispose();
      await postgres?.stop();
      dir.remove();
    });

    /** The ids a VM's event stream gives its events (`<created_at>|<id>`), oldest first, from GET /events. */
    const historyIds = async (id: string): Promise<string[]> =>
      ((await send(url(`/v1/vms/${id}/events`))).body.items as Array<{ id: string; created_at: string }>).map((event) => `${event.created_at}|${event.id}`);
    /** An action, waited for until the VM is in `state`. */
    const act = async (id: string, action: 'start' | 'stop', state: string) => {
      const answer = await send(url(`/v1/vms/${id}/${action}?wait=30`), { method: 'POST' });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal((await send(url(`/v1/vms/${id}`))).body.state, state, `${action} reached ${state}`);
    };
    /** The next `count` events of a stream. */
    const take = async (stream: EventStream, count: number): Promise<SseEvent[]> => (count === 0 ? [] : stream.until(() => --count === 0, 20_000));

    it("GET /v1/events lists every VM's events oldest first, filtered by level and time", async () => {
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
      assert.ok(
        actionLines.some((line) => line.action === 'start' && line.result === 'ok' && typeof line.duration_ms === 'number'),
        JSON.stringify(actionLines),
      );

      const all = (await send(url(`/v1/events?since=${encodeURIComponent(started)}`))).body.items as any[];
      assert.ok(
        all.some((event) => event.vm_id === fine.body.id && event.to_state === 'running'),
        JSON.stringify(all),
      );
      assert.ok(
        all.some((event) => event.vm_id === huge.body.id && event.level === 'error'),
        JSON.stringify(all),
      );
      for (let i = 1; i < all.length; i++) assert.ok(all[i].created_at >= all[i - 1].created_at, 'oldest first');

      const errors = (await send(url(`/v1/events?since=${encodeURIComponent(started)}&level=error`))).body.items as any[];
      assert.ok(errors.length > 0 && errors.every((event) => event.level === 'error' && event.vm_id === huge.body.id), JSON.stringify(errors));
      const warnings = (await send(url(`/v1/events?since=${encodeURIComponent(started)}&level=warn`))).body.items as any[];
      assert.ok(
        warnings.length > 0 && warnings.every((event) => event.level === 'warn' || event.level === 'error'),
        `warn and above, the huge VM's error among them: ${JSON.stringify(warnings)}`,
      );
      assert.deepEqual((await send(url(`/v1/events?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`))).body.items, []);
      assert.equal((await send(url(`/v1/events?since=${encodeURIComponent(started)}&limit=1`))).body.items.length, 1);

      assertErrorContract(await send(url('/v1/events?level=debug')), 400, 'validation_failed');
      assertErrorContract(await send(url('/v1/events?since=yesterday')), 400, 'validation_failed');
      assertErrorContract(await send(url('/v1/events?limit=0')), 400, 'validation_failed');
      await send(url(`/v1/vms/${huge.body.id}?wait=10`), { method: 'DELETE' });
      await send(url(`/v1/vms/${fine.body.id}?wait=10`), { method: 'DELETE' });
    });

    it("a VM's event stream sends its history, then each new event once; Last-Event-ID resumes right after the event it names; deletion ends it", async () => {
      const vm = (await send(url('/v1/vms?wait=30'), { body: vmBody('streamed') })).body;
      assert.equal(vm.state, 'running', JSON.stringify(vm));
      // A few more events before any stream opens, so there is a middle to resume from.
      await act(vm.id, 'stop', 'stopped');
      await act(vm.id, 'start', 'running');
      const before = await historyIds(vm.id);
      assert.ok(before.length >= 5, `enough history to resume from its middle: ${JSON.stringify(before)}`);

      const stream = await openEventStream(url(`/v1/vms/${vm.id}/events/stream`));
      try {
        assert.equal(stream.status, 200);
        const history = await take(stream, before.length);
        assert.ok(
          history.every((event) => event.event === 'vm_event'),
          JSON.stringify(history),
        );
        assert.deepEqual(
          history.map((event) => event.id),
          before,
          'the history, in the order GET /events answers it',
        );
        assert.deepEqual(JSON.parse(history.at(-1)!.data), (await send(url(`/v1/vms/${vm.id}/events`))).body.items.at(-1), 'each event is the VmEvent');
        // Live: what happens next comes once, after the history, each event once (none given again at the next poll).
        await act(vm.id, 'stop', 'stopped');
        const live = await stream.until((event) => JSON.parse(event.data).to_state === 'stopped', 20_000);
        assert.deepEqual(
          [...history, ...live].map((event) => event.id),
          await historyIds(vm.id),
          'history then live events: no repeat, no hole',
        );
      } finally {
        stream.close();
      }

      // Resuming from the middle of the history gives exactly the events after the one named: none
      // of it again, none skipped, then what happens next.
      const all = await historyIds(vm.id);
      const middle = Math.floor(all.length / 2);
      const resumed = await openEventStream(url(`/v1/vms/${vm.id}/events/stream`), { 'last-event-id': all[middle]! });
      try {
        assert.equal(resumed.status, 200);
        const backlog = await take(resumed, all.length - middle - 1);
        assert.deepEqual(
          backlog.map((event) => event.id),
          all.slice(middle + 1),
          `resumed after event ${middle} of ${all.length}`,
        );
        await act(vm.id, 'start', 'running');
        const next = await resumed.until((event) => JSON.parse(event.data).to_state === 'running', 20_000);
        assert.deepEqual(
          [...backlog, ...next].map((event) => event.id),
          (await historyIds(vm.id)).slice(middle + 1),
          'and it goes on without a hole',
        );

        assert.equal((await send(url(`/v1/vms/${vm.id}?wait=30`), { method: 'DELETE' })).status, 200);
        const end = await resumed.until((event) => event.event === 'end', 20_000);
        assert.deepEqual(JSON.parse(end.at(-1)!.data), { reason: 'vm_deleted' });
        assert.equal(await resumed.next(10_000), undefined, 'closed after the end event');
      } finally {
        resumed.close();
      }
      assertErrorContract(await send(url(`/v1/vms/${vm.id}/events/stream`)), 404, 'not_found');
    });

    it('resuming after the newest event sends nothing until the next one', async () => {
      const vm = (await send(url('/v1/vms?wait=30'), { body: vmBody('caught-up') })).body;
      const all = await historyIds(vm.id);
      const resumed = await openEventStream(url(`/v1/vms/${vm.id}/events/stream`), { 'last-event-id': all.at(-1)! });
      try {
        await act(vm.id, 'stop', 'stopped');
        const next = await resumed.until((event) => JSON.parse(event.data).to_state === 'stopped', 20_000);
        assert.deepEqual(
          next.map((event) => event.id),
          (await historyIds(vm.id)).slice(all.length),
          'only the events after the newest one',
        );
      } finally {
        resumed.close();
      }
      assert.equal((await send(url(`/v1/vms/${vm.id}?wait=30`), { method: 'DELETE' })).status, 200);
    });

    it('a Last-Event-ID that is not one of ours starts from the history, as none would, instead of failing', async () => {
      const vm = (await send(url('/v1/vms?wait=30'), { body: vmBody('foreign-ids') })).body;
      const [firstId] = await historyIds(vm.id);
      // A date the database cannot read (year 0000, which `Date` takes; a day past its month's end),
      // and an id of a UUID's length that is no UUID, which the database would refuse to compare.
      for (const foreign of [`0000-01-01T00:00:00Z|${vm.id}`, `2026-02-30T00:00:00Z|${vm.id}`, `2026-01-01T00:00:00.000Z|${'-'.repeat(36)}`, 'not a cursor']) {
        const stream = await openEventStream(url(`/v1/vms/${vm.id}/events/stream`), { 'last-event-id': foreign });
        try {
          assert.equal(stream.status, 200, `Last-Event-ID ${foreign}`);
          assert.equal((await stream.next(20_000))?.id, firstId, `Last-Event-ID ${foreign}: the history from its start`);
        } finally {
          stream.close();
        }
      }
      assert.equal((await send(url(`/v1/vms/${vm.id}?wait=30`), { method: 'DELETE' })).status, 200);
    });
  });
}
