import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tapNameOf } from '../../src/contracts/host-names.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { UndoStack } from '../../src/kit/undo-stack.js';
import { captureLogger } from '../support/capture-logger.js';
import { type FirecrackerAgent, doubleImage, startFirecrackerAgent } from '../support/firecracker-agent.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/**
 * The manager's lifecycle end to end through `POST /v1/vms`, on a host whose agent runs VMs on the
 * Firecracker driver (over the API double, which checks every request against the contract).
 */
describe('manager lifecycle on a Firecracker host', () => {
  const dir = tempDir('nexus-manager-fc-');
  const runDir = join(dir.path, 'run');
  let manager: TestManager;
  let fc: FirecrackerAgent;
  const url = (path: string) => `${manager.url}${path}`;
  // Each resource is registered for removal as it is made, so a step that fails part-way (a
  // double that cannot start, an assertion mid-lifecycle) still leaves no TAP, VMM or bridge.
  const undo = captureLogger('cleanup');
  const cleanup = new UndoStack(undo.log);

  before(async () => {
    cleanup.push('remove the temp dir', () => dir.remove());
    const image = doubleImage(runDir);
    mkdirSync(join(image.kernel, '..'), { recursive: true });
    writeFileSync(image.kernel, 'kernel');
    writeFileSync(image.rootfs, Buffer.alloc(1 << 20));
    manager = await startTestManager({ resyncMs: 1000 });
    cleanup.push('stop the manager', () => manager.dispose());
    fc = await startFirecrackerAgent({ runDir, managerUrl: manager.url, joinToken: (await manager.hosts.mintJoinToken(600)).token, name: 'fc-host' });
    cleanup.push('stop the agent and remove its bridge', () => fc.close());
    await eventually('the Firecracker host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
  });
  after(async () => {
    await cleanup.unwind();
    const failed = undo.lines.filter((line) => line.undo).map((line) => `${String(line.undo)}: ${(line.err as { message?: string } | undefined)?.message}`);
    assert.deepEqual(failed, [], 'every cleanup step succeeded');
  });

  /**
   * Every VM this test made, gone: deleted through the manager (as a user would), then off the
   * host through the agent, whichever of them the failure left it in.
   */
  const removeVms = async () => {
    const ids = new Set<string>();
    for (const vm of (await send(url('/v1/vms'))).body.items as { id: string }[]) {
      ids.add(vm.id);
      const deleted = await send(url(`/v1/vms/${vm.id}?wait=15`), { method: 'DELETE' });
      if (deleted.status !== 200 && deleted.status !== 404) throw new Error(`deleting VM ${vm.id}: ${deleted.status} ${JSON.stringify(deleted.body)}`);
    }
    for (const vm of (await fc.call('GET', '/agent/v1/inventory')).body.vms as { id: string }[]) ids.add(vm.id);
    for (const id of ids) await fc.removeVm(id);
  };

  const pidOf = (id: string) => (JSON.parse(readFileSync(join(runDir, 'vms', id, 'pid'), 'utf8')) as { pid: number }).pid;

  it('create -> running, stop -> stopped, start, restart after kill -9, delete -> every host resource gone', async () => {
    const image = doubleImage(runDir);
    cleanup.push('remove the VMs and their host resources', removeVms);
    const created = await send(url('/v1/vms?wait=15'), {
      body: {
        name: 'on-firecracker',
        vcpu: 1,
        mem_mib: 128,
        kernel_path: image.kernel,
        rootfs_path: image.rootfs,
        boot_args: 'console=ttyS0 reboot=k panic=1',
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const vm = created.body;
    assert.equal(vm.state, 'running');
    const spec = JSON.parse(readFileSync(join(runDir, 'vms', vm.id, 'spec.json'), 'utf8'));
    assert.equal(spec.driver, 'firecracker', 'the host default driver');
    const socket = join(runDir, 'vms', vm.id, 'sock', 'fc.sock');
    assert.ok(existsSync(socket));
    const read = (await send(url(`/v1/vms/${vm.id}`))).body;
    assert.equal(read.driver, 'firecracker', 'the driver the agent reports');
    assert.equal(read.api_socket, socket, "Firecracker's API socket, not QEMU's monitor");

    const stopped = await send(url(`/v1/vms/${vm.id}/stop?wait=15`), { method: 'POST' });
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal((await send(url(`/v1/vms/${vm.id}`))).body.state, 'stopped');
    assert.equal(existsSync(socket), false);
    assert.equal((await send(url(`/v1/vms/${vm.id}/start?wait=15`), { method: 'POST' })).status, 200);

    const first = pidOf(vm.id);
    process.kill(first, 'SIGKILL');
    await eventually(
      'the reconciler starts a new Firecracker process',
      () => {
        try {
          const pid = pidOf(vm.id);
          return pid !== first && isAlive(pid);
        } catch {
          return false;
        }
      },
      20_000,
    );
    await eventually('running again', async () => (await send(url(`/v1/vms/${vm.id}`))).body.state === 'running', 10_000);
    const events = (await send(url(`/v1/vms/${vm.id}/events`))).body.items.map((event: { message: string }) => event.message);
    assert.ok(events.some((message: string) => /the VMM exited while the VM should run/.test(message)));

    const last = pidOf(vm.id);
    assert.equal((await send(url(`/v1/vms/${vm.id}?wait=15`), { method: 'DELETE' })).status, 200);
    assert.equal((await send(url(`/v1/vms/${vm.id}`))).status, 404);
    assert.ok(!isAlive(last));
    assert.equal(existsSync(join(runDir, 'vms', vm.id)), false, 'run dir gone');
    assert.equal(await readLink(tapNameOf(vm.id)), undefined, 'TAP gone');
    const inventory = await fc.call('GET', '/agent/v1/inventory');
    assert.deepEqual(inventory.body.vms, []);
    assert.deepEqual(inventory.body.orphans, { dirs: [], taps: [], processes: [], sockets: [] });
  });
});
