import type { VmLayout } from '../../contracts/vm-layout.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import type { StoredVm, VmStore } from '../ports/vm-store.js';
import type { SnapshotFiles, VmmDriver } from '../ports/vmm-driver.js';
import { checkVmFiles, markLaunched } from '../steps/folder-steps.js';
import { makeNic, networkNicOf } from '../steps/network-steps.js';
import { putBackDrive } from '../steps/snapshot-steps.js';
import { restoreVmm, resumeVmm } from '../steps/vmm-steps.js';
import type { Step } from './plan.js';

export interface RestoreVmInput {
  vm: VmLayout;
  stored: StoredVm;
  driver: VmmDriver;
  /** The snapshot's folder, and its files (read when the VMM is restored). */
  dir: string;
  snapshot: () => Promise<SnapshotFiles>;
  now: () => Date;
}

/**
 * Replaces a stopped VM's guest with a snapshot of it: the disks as they were when it was taken
 * (the VM's own kept aside until the restore has worked), a fresh VMM from the saved state, resumed.
 */
export function restoreVmPlan(store: VmStore, network: HostNetwork, supervisor: ProcessSupervisor, input: RestoreVmInput): Step[] {
  const { vm, stored, driver } = input;
  return [
    ...stored.spec.drives.filter((drive) => !drive.read_only).map((drive) => putBackDrive(store, drive.path, store.snapshotDrivePath(input.dir, drive.id))),
    checkVmFiles(store, vm, stored),
    ...(stored.spec.nics[0] ? [makeNic(network, vm.id, async () => driver.vmmUser?.(vm), networkNicOf(vm.id, stored.spec))] : []),
    markLaunched(store, vm, input.now),
    restoreVmm(driver, supervisor, vm, stored.spec, input.snapshot),
    resumeVmm(driver, vm),
  ];
}
