// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tapNameOf } from '../../src/contracts/host-names.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** Long enough that the manager is stopped well before it, even on a loaded machine. */
const TTL_SECONDS = 12;

/**
 * An ephemeral VM created through the manager ends on time with the manager down: the manager
 * hands `expires_at` to the agent with the VM's spec, and the agent (the real agent code over a
 * hollow host) deletes the VM itself when that time comes.
 */
describe('a VM with ttl_seconds is deleted by its agent, manager or not', () => {
  const dir = tempDir('nexus-vm-ttl-');
  let manager: TestManager | undefined;
  let hollow: HollowAgent;

  before(async () => {
    manager = await startTestManager();
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'hollow-ttl');
    await eventually('the hollow host is ready', async () => (await manager?.hosts.list())?.some((host) => host.status === 'ready') ?? false);
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  const onAgent = (id: string) => send(`${hollow.agent.url}/agent/v1/vms/${id}`, { headers: { authorization: `Bearer ${hollow.agent.identity.credential}` } });

  it('the agent gets expires_at with the spec, and deletes the VM at that time while the manager is stopped', async () => {
    const running = manager as TestManager;
    const created = await send(`${running.url}/v1/vms?wait=30`, {
      body: { name: 'ephemeral-1', vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs, ttl_seconds: TTL_SECONDS },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.state, 'running');
    const id: string = created.body.id;
    const expiresAt: string = created.body.expires_at;
    assert.ok(expiresAt, 'the manager set an expiry');

    const before = await onAgent(id);
    assert.equal(before.status, 200, JSON.stringify(before.body));
    assert.equal(before.body.spec.expires_at, expiresAt, "the agent's spec carries the manager's expiry");
    assert.equal(before.body.state, 'running');

    await running.dispose();
    manager = undefined;
    assert.ok(Date.now() < Date.parse(expiresAt), 'the manager was stopped before the VM expired (else this proves nothing of the agent)');

    await eventually('the agent deleted the VM', async () => (await onAgent(id)).status === 404, TTL_SECONDS * 1000 + 60_000);
    const deletion = hollow.logs.find((line) => line.msg === 'VM expired: deleted by the agent' && line.vm_id === id);
    assert.ok(deletion, `deleted by the agent's own expiry (the manager was stopped ${TTL_SECONDS} s early), not by a call`);
    assert.ok(
      Date.parse(String(deletion.time)) >= Date.parse(expiresAt),
      `not before its expiry: deleted at ${String(deletion.time)}, expiring at ${expiresAt}`,
    );
    assert.equal(hollow.host.supervisor.processes.has(id), false, 'its VMM is gone');
    assert.equal(hollow.host.network.taps.has(tapNameOf(id)), false, 'its TAP is gone');
    assert.equal(existsSync(join(hollow.runDir, 'vms', id)), false, 'its folder is gone');
  });
});
