import type { HostSnapshot } from '../../contracts/agent-vm-api.js';
import { macOf } from '../../contracts/host-names.js';
import type { DriveSpec, MachineSpec } from '../../contracts/machine-spec.js';
import type { SnapshotLayout, VmLayout } from '../../contracts/vm-layout.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import type { VmStore } from '../ports/vm-store.js';
import type { SnapshotFiles, VmmDriver } from '../ports/vmm-driver.js';
import { copyPrivateDrive, createVmFolder, markLaunched, storeSpec } from '../steps/folder-steps.js';
import { makeNic, networkNicOf } from '../steps/network-steps.js';
import { restoreVmm, resumeVmm } from '../steps/vmm-steps.js';
import type { Step } from './plan.js';

/**
 * The spec a VM restored from another VM's snapshot is stored with: the one asked for, whose
 * machine must be the snapshot's (its memory is the guest's, its devices the VMM's), with each
 * writable drive the VM's private copy of the snapshot's, and its NIC keeping the snapshot's MAC
 * and, as `guest_ip`, the address the guest's memory holds.
 */
export async function instantiatedSpec(store: VmStore, vm: VmLayout, requested: MachineSpec, snapshot: HostSnapshot): Promise<MachineSpec> {
  const source = snapshot.spec;
  const writable = (spec: MachineSpec) =>
    spec.drives
      .filter((drive) => !drive.read_only)
      .map((drive) => drive.id)
      .sort()
      .join(', ');
  const differences = [
    requested.vcpu !== source.vcpu && `vcpu ${requested.vcpu}, not ${source.vcpu}`,
    requested.mem_mib !== source.mem_mib && `mem_mib ${requested.mem_mib}, not ${source.mem_mib}`,
    (requested.driver ?? snapshot.driver) !== snapshot.driver && `driver ${requested.driver ?? ''}, not ${snapshot.driver}`,
    writable(requested) !== writable(source) && `writable drives ${writable(requested) || 'none'}, not ${writable(source) || 'none'}`,
    requested.nics.length !== source.nics.length && `${requested.nics.length} NICs, not ${source.nics.length}`,
  ].filter((difference): difference is string => typeof difference === 'string');
  if (differences.length > 0) {
    throw new NexusError('conflict', `VM ${vm.id} is not the machine snapshot ${snapshot.id} is of: ${differences.join('; ')}`, {
      suggestion: 'A VM restored from a snapshot has the machine of the VM it was taken of.',
    });
  }
  const kernel = await store.allowedFile(vm, 'kernel', requested.kernel.path);
  const initrd = requested.initrd ? await store.allowedFile(vm, 'initrd', requested.initrd.path) : undefined;
  const drives: DriveSpec[] = [];
  for (const drive of requested.drives) {
    drives.push(
      drive.read_only
        ? { ...drive, path: await store.allowedFile(vm, `drive ${drive.id}`, drive.path) }
        : { ...drive, path: store.privateDrivePath(vm, drive.id) },
    );
  }
  const nics = requested.nics.map((nic, index) => {
    const was = source.nics[index];
    if (!nic.network || !nic.ip) return {};
    if (!was?.ip) {
      throw new NexusError('conflict', `snapshot ${snapshot.id} is of a VM with no address: its clone would have none of its own`, {
        suggestion: 'Snapshot VMs on a network to restore them as new VMs.',
      });
    }
    return {
      network: nic.network,
      ip: nic.ip,
      mac: was.mac ?? macOf(snapshot.vm_id),
      ...(was.ip !== nic.ip ? { guest_ip: was.ip } : {}),
      ...(nic.ports?.length ? { ports: nic.ports } : {}),
    };
  });
  return {
    ...requested,
    driver: snapshot.driver,
    kernel: { ...requested.kernel, path: kernel },
    ...(initrd ? { initrd: { path: initrd } } : {}),
    drives,
    nics,
  };
}

export interface InstantiateVmInput {
  vm: VmLayout;
  spec: MachineSpec;
  driver: VmmDriver;
  snapshot: SnapshotLayout;
  /** The snapshot's files, every path from its layout (none from its record). */
  files: SnapshotFiles;
  now: () => Date;
}

/**
 * Makes a new VM from a snapshot kept on the host: its folder, a private copy of each of the
 * snapshot's drives, its NIC (translating the guest's frozen address to its own), its spec, then
 * a VMM restored from the snapshot's state, resumed. A failure undoes all of it.
 */
export function instantiateVmPlan(store: VmStore, network: HostNetwork, supervisor: ProcessSupervisor, input: InstantiateVmInput): Step[] {
  const { vm, spec, driver } = input;
  const copies = spec.drives
    .filter((drive) => !drive.read_only)
    .map((drive) => copyPrivateDrive(store, store.snapshotDrivePath(input.snapshot.dir, drive.id), drive.path));
  return [
    createVmFolder(store, vm),
    ...copies,
    ...(spec.nics[0] ? [makeNic(network, vm.id, async () => driver.vmmUser?.(vm), networkNicOf(vm.id, spec))] : []),
    storeSpec(store, vm, { spec, driver: driver.name }),
    markLaunched(store, vm, input.now),
    restoreVmm(driver, supervisor, vm, spec, async () => input.files),
    resumeVmm(driver, vm),
  ];
}
