// test-lane: parallel (its own manager, hollow host, database, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

const CYCLES = 50;

/**
 * Snapshots, and VMs made from them, taken and deleted 50 times over through the API, on a manager
 * with one hollow host (real agent code and files, no VMM): every row and file goes with what it
 * belongs to, and nothing is left on the host.
 */
describe('snapshot -> instantiate -> delete, 50 times', () => {
  const dir = tempDir('nexus-snapshot-churn-');
  const runDir = join(dir.path, 'run');
  let manager: TestManager;
  let hollow: HollowAgent;
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    // Five calls a cycle, 50 cycles: past the default 100 writes a minute per token.
    manager = await startTestManager({ resyncMs: 500, writesPerMinute: 10_000 });
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, runDir, 'hollow-snapshot-churn');
    await eventually('the hollow host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it('leaves no row, snapshot folder, VM folder or namespace behind', async () => {
    const made = await send(url('/v1/vms?wait=30'), {
      body: { name: 'origin', vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs },
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const origin = made.body;
    assert.equal(origin.state, 'running', JSON.stringify(origin));
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const taken = await send(url(`/v1/vms/${origin.id}/snapshots`), { body: { name: `s-${cycle}` } });
      assert.equal(taken.status, 201, `cycle ${cycle}: ${JSON.stringify(taken.body)}`);
      const clone = await send(url(`/v1/snapshots/${taken.body.id}/instantiate?wait=30`), { body: { name: `clone-${cycle}` } });
      assert.equal(clone.status, 201, `cycle ${cycle}: ${JSON.stringify(clone.body)}`);
      assert.equal(clone.body.state, 'running', `cycle ${cycle}: the clone runs`);
      assert.equal((await send(url(`/v1/vms/${clone.body.id}?wait=30`), { method: 'DELETE' })).status, 200, `cycle ${cycle}: clone deleted`);
      // Every other snapshot goes with its own delete, the rest with the original at the end.
      if (cycle % 2 === 0) assert.equal((await send(url(`/v1/snapshots/${taken.body.id}`), { method: 'DELETE' })).status, 200);
    }
    assert.equal((await send(url(`/v1/snapshots?vm_id=${origin.id}`))).body.items.length, CYCLES / 2, 'the snapshots not deleted are kept');
    assert.equal((await send(url(`/v1/vms/${origin.id}?wait=30`), { method: 'DELETE' })).status, 200);

    assert.deepEqual((await send(url('/v1/snapshots'))).body.items, [], 'no snapshot row');
    assert.deepEqual((await send(url('/v1/vms'))).body.items, [], 'no VM row');
    const inventory = (await send(`${hollow.agent.url}/agent/v1/inventory`, { headers: { authorization: `Bearer ${hollow.agent.identity.credential}` } })).body;
    assert.deepEqual([inventory.vms, inventory.snapshots], [[], []], 'the host has none of them');
    assert.deepEqual(inventory.orphans, { dirs: [], taps: [], processes: [], sockets: [] }, 'and no leftover');
    const left = (folder: string) => (existsSync(join(runDir, folder)) ? readdirSync(join(runDir, folder)) : []);
    assert.deepEqual([left('vms'), left('snapshots')], [[], []], 'no VM or snapshot folder on disk');
    assert.deepEqual([...hollow.host.network.taps], [], 'no namespace or TAP');
  });
});
