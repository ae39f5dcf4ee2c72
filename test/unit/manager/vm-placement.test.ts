import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { ImageRegistry } from '../../../src/manager/app/image-registry.js';
import { VmManager } from '../../../src/manager/app/vm-manager.js';
import { NetworkManager } from '../../../src/manager/app/network-manager.js';
import type { Principal } from '../../../src/manager/domain/access-policy.js';
import { captureLogger } from '../../support/capture-logger.js';
import { ManualClock, MemoryHostRepo, MemoryImageRepo, MemoryVmRepo, TEST_NETWORK_POOL, hostRecord } from '../../doubles/memory-manager.js';

// VmManager.placement answers the logs, metrics and console routes of a VM that never reached a
// host: its 409 must tell the caller why in words (it once printed the stored error object).

const HOST = hostRecord({ id: '11111111-0000-4000-8000-000000000001', name: 'host-1', capacity: { memory_mib: 4096, run_dir: '/srv/fc' } });
const operator: Principal = { tokenId: 'token-op', owner: 'alice', role: 'operator', project: 'default' };

async function unplacedVm() {
  const clock = new ManualClock();
  const vms = new MemoryVmRepo(clock);
  const imageRepo = new MemoryImageRepo();
  const kernel = imageRepo.put({ name: 'default', kind: 'kernel' }, { [HOST.id]: '/srv/fc/images/vmlinux' });
  const rootfs = imageRepo.put({ name: 'default', kind: 'rootfs' }, { [HOST.id]: '/srv/fc/images/rootfs.ext4' });
  const manager = new VmManager(
    vms,
    new MemoryHostRepo([HOST]),
    new ImageRegistry(imageRepo, clock, captureLogger('images').log),
    new NetworkManager(vms.networks, TEST_NETWORK_POOL),
    { deleteOfVm: async () => undefined, restorable: noSnapshots },
    () => () => undefined,
    () => undefined,
    clock,
    { mode: 'production' },
  );
  const vm = await manager.create({ name: 'web', vcpu: 1, mem_mib: 256, kernel_image_id: kernel.id, rootfs_image_id: rootfs.id }, operator);
  return { manager, vms, vm, clock };
}

/** The NexusError `promise` rejects with. */
async function refusal(promise: Promise<unknown>): Promise<NexusError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof NexusError, `a NexusError, not ${String(error)}`);
    return error;
  }
  assert.fail('expected a refusal');
}

describe('VmManager.placement of a VM on no host', () => {
  it('says in words why it never ran, from its last error', async () => {
    const { manager, vms, vm, clock } = await unplacedVm();
    const message = 'no ready host has 256 MiB of memory free';
    await vms.observe(vm.id, { to: 'failed', message, lastError: { reason: 'no_capacity', message, at: clock.now().toISOString() } });
    const error = await refusal(manager.placement(vm.id, operator));
    assert.equal(error.code, 'conflict');
    assert.equal(error.suggestion, `It never ran: ${message}`);
    assert.ok(!String(error.suggestion).includes('[object Object]'), `no object in the suggestion: ${error.suggestion}`);
  });

  it('asks the caller to wait while it has no error yet', async () => {
    const { manager, vm } = await unplacedVm();
    const error = await refusal(manager.placement(vm.id, operator));
    assert.equal(error.code, 'conflict');
    assert.equal(error.suggestion, 'Wait until it is placed; GET /v1/vms/:id/events says what happened.');
  });
});

/** These tests make no VM from a snapshot. */
async function noSnapshots(): Promise<never> {
  throw new Error('no snapshots in this test');
}
