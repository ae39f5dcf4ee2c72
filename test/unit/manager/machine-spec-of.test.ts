import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { machineSpecOf } from '../../../src/manager/reconcilers/vm-reconciler.js';
import { ManualClock, MemoryVmRepo } from '../../doubles/memory-manager.js';

async function vmWith(bootArgs: string, withNic: boolean) {
  const vms = new MemoryVmRepo(new ManualClock());
  const network = await vms.networks.create({ project: 'default', name: 'backend', cidr: '10.1.0.0/24', egress: 'deny', dns: ['10.1.0.53', '9.9.9.9'] });
  return vms.create(
    {
      project: 'default',
      name: 'web-1',
      desiredState: 'running',
      tags: {},
      expiresAt: null,
      nics: withNic ? [{ networkId: network.id, ip: '10.1.0.9' }] : [],
      spec: { vcpu: 1, mem_mib: 128, kernel_path: '/k', initrd_path: null, boot_args: bootArgs, rootfs_path: '/r', extra_drives: [], nic: withNic },
    },
    () => undefined,
  );
}

describe('machineSpecOf: what the agent is asked to run', () => {
  it("carries each NIC's network and address, and boots the guest with them (address, gateway, DNS, hostname)", async () => {
    const vm = await vmWith('console=ttyS0 root=/dev/vda', true);
    const spec = machineSpecOf(vm);
    assert.deepEqual(spec.nics, [
      { network: { id: vm.nics[0]?.networkId, cidr: '10.1.0.0/24', egress: 'deny', dns: ['10.1.0.53', '9.9.9.9'] }, ip: '10.1.0.9' },
    ]);
    assert.equal(spec.kernel.cmdline, 'console=ttyS0 root=/dev/vda nexus.ip=10.1.0.9/24 nexus.gw=10.1.0.1 nexus.dns=10.1.0.53,9.9.9.9 nexus.hostname=web-1');
  });

  it('replaces network parameters written into boot_args by hand: the address IPAM gave is the one the host routes', async () => {
    const vm = await vmWith('console=ttyS0 nexus.ip=172.31.0.9/24 nexus.gw=172.31.0.1 quiet', true);
    assert.equal(
      machineSpecOf(vm).kernel.cmdline,
      'console=ttyS0 quiet nexus.ip=10.1.0.9/24 nexus.gw=10.1.0.1 nexus.dns=10.1.0.53,9.9.9.9 nexus.hostname=web-1',
    );
  });

  it('leaves the boot_args of a VM without an address as they are', async () => {
    const vm = await vmWith('console=ttyS0 nexus.ip=172.31.0.9/24', false);
    const spec = machineSpecOf(vm);
    assert.equal(spec.kernel.cmdline, 'console=ttyS0 nexus.ip=172.31.0.9/24');
    assert.deepEqual(spec.nics, []);
  });
});
