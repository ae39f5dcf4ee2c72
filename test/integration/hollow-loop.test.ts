// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/**
 * The PRD's leak check at control-plane scale: create, start, stop and delete 100 times through
 * the manager against one host run by the real agent code over a hollow driver.
 */
describe('100 lifecycles against one hollow host', () => {
  const dir = tempDir('nexus-hollow-');
  let manager: TestManager;
  let hollow: HollowAgent;

  before(async () => {
    // 300 writes in seconds from one token and one address: well past the default limits, which are not under test here.
    manager = await startTestManager({ resyncMs: 2000, writesPerMinute: 100_000, requestsPerAddressPerMinute: 1_000_000 });
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'hollow-1');
    await eventually('the hollow host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it('every VM reaches running and is gone after delete, and nothing leaks', async () => {
    const url = (path: string) => `${manager.url}${path}`;
    for (let i = 0; i < 100; i++) {
      const created = await send(url('/v1/vms?wait=10'), {
        body: { name: `loop-${i}`, vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.state, 'running', `loop ${i}`);
      const id = created.body.id;
      assert.equal((await send(url(`/v1/vms/${id}/stop?wait=10`), { method: 'POST' })).status, 200);
      assert.equal((await send(url(`/v1/vms/${id}?wait=10`), { method: 'DELETE' })).status, 200);
      assert.equal((await send(url(`/v1/vms/${id}`))).status, 404);
    }
    assert.equal(hollow.host.supervisor.processes.size, 0, 'no VMM left');
    assert.equal(hollow.host.network.taps.size, 0, 'no TAP left');
    assert.deepEqual(readdirSync(join(hollow.runDir, 'vms')), [], 'no run dir left');
    assert.deepEqual((await send(url('/v1/vms'))).body.items, []);
  });
});
