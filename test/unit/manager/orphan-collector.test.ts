import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { CollectOrphansRequest, Inventory } from '../../../src/contracts/agent-vm-api.js';
import { OrphanCollector } from '../../../src/manager/reconcilers/orphan-collector.js';
import { hostRecord } from '../../doubles/memory-manager.js';
import { captureLogger } from '../../support/capture-logger.js';

const GRACE_MS = 60_000;
const KNOWN_VM = '11111111-1111-4111-8111-111111111111';
const STRAY_VM = '22222222-2222-4222-8222-222222222222';

const host = hostRecord({
  id: 'host-1',
  capacity: { vcpus: 2, memory_mib: 4096, memory_available_mib: 2048, disk_total_mib: 10_000, disk_available_mib: 5000 },
});

/**
 * The collector over in-memory ports and a clock the test moves: the agent reports `orphans`, and
 * every removal it is asked for is recorded (and reported done).
 */
function collectorWith(orphans: Inventory['orphans'], snapshots: { onHost: string[]; rows: string[] } = { onHost: [], rows: [] }) {
  let nowMs = 1_000_000;
  const asked: CollectOrphansRequest[] = [];
  const collector = new OrphanCollector(
    { list: async () => [host] },
    { ids: async () => [KNOWN_VM] },
    { ids: async () => snapshots.rows },
    {
      inventory: async () => ({ vms: [], snapshots: snapshots.onHost, orphans }),
      deleteVm: async () => undefined,
      collectOrphans: async (_target: unknown, request: CollectOrphansRequest) => {
        asked.push(request);
        return { dirs: [], taps: [], processes: [], sockets: [], snapshots: [] };
      },
    },
    { now: () => new Date(nowMs) },
    captureLogger('orphan-collector').log,
    { graceMs: GRACE_MS, everyMs: 1000 },
    { isLeader: () => true },
    new Registry(),
  );
  return {
    asked,
    /** One sweep, `afterMs` after the first. */
    sweepAt: async (afterMs: number) => {
      nowMs = 1_000_000 + afterMs;
      await collector.sweep();
    },
  };
}

describe('OrphanCollector applies the grace to what agents report', () => {
  const orphans: Inventory['orphans'] = {
    dirs: ['/srv/fc/vms/left-behind'],
    taps: ['nx-stray'],
    processes: [
      { pid: 4242, vm_id: STRAY_VM, command: 'qemu-system-x86_64' },
      { pid: 4343, vm_id: KNOWN_VM, command: 'qemu-system-x86_64' },
    ],
    sockets: ['/srv/fc/vms/x/sock/qmp.sock'],
  };

  it('leaves every leftover alone until it has been seen for the grace, then asks for all of them', async () => {
    const { asked, sweepAt } = collectorWith(orphans);
    await sweepAt(0);
    await sweepAt(GRACE_MS / 2);
    await sweepAt(GRACE_MS - 1);
    assert.deepEqual(asked, [], 'nothing younger than the grace is asked for');
    await sweepAt(GRACE_MS);
    assert.deepEqual(
      asked,
      [{ processes: [4242], taps: ['nx-stray'], sockets: ['/srv/fc/vms/x/sock/qmp.sock'], dirs: ['/srv/fc/vms/left-behind'], snapshots: [] }],
      "all due at the grace, but never a known VM's process",
    );
  });

  it('asks for the snapshots a host keeps without a row, after the grace, and never for one with a row', async () => {
    const withRow = '33333333-3333-4333-8333-333333333333';
    const withoutRow = '44444444-4444-4444-8444-444444444444';
    const { asked, sweepAt } = collectorWith({ dirs: [], taps: [], processes: [], sockets: [] }, { onHost: [withRow, withoutRow], rows: [withRow] });
    await sweepAt(0);
    await sweepAt(GRACE_MS - 1);
    assert.equal(asked.length, 0, 'a snapshot being recorded is not taken for a leftover at once');
    await sweepAt(GRACE_MS);
    assert.deepEqual(
      asked.map((request) => request.snapshots),
      [[withoutRow]],
    );
  });

  it('gives a leftover that appears later a grace of its own', async () => {
    const later: Inventory['orphans'] = { dirs: [], taps: ['nx-first'], processes: [], sockets: [] };
    const { asked, sweepAt } = collectorWith(later);
    await sweepAt(0);
    later.taps.push('nx-second');
    await sweepAt(GRACE_MS / 2);
    await sweepAt(GRACE_MS);
    assert.deepEqual(
      asked.map((request) => request.taps),
      [['nx-first']],
      'only the older TAP is due',
    );
    await sweepAt(GRACE_MS + GRACE_MS / 2 - 1);
    assert.deepEqual(
      asked.map((request) => request.taps),
      [['nx-first'], ['nx-first']],
      'the newer one is still 1 ms short',
    );
    await sweepAt(GRACE_MS + GRACE_MS / 2);
    assert.deepEqual(asked.at(-1)?.taps, ['nx-first', 'nx-second']);
  });
});
