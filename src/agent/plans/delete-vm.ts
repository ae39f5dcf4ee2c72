import type { VmLayout } from '../../contracts/vm-layout.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import type { VmStore } from '../ports/vm-store.js';
import type { VmmDriver } from '../ports/vmm-driver.js';
import type { VmmProcessFinder } from '../ports/vmm-processes.js';
import { removeVmFolder } from '../steps/folder-steps.js';
import { deleteNic } from '../steps/network-steps.js';
import { forgetVmm, killStrayVmms, releaseDriver, stopVmm } from '../steps/vmm-steps.js';
import type { Step } from './plan.js';

export interface DeleteVmInput {
  vm: VmLayout;
  /** The driver of the VMM that runs for the VM, if one does: it is stopped (the guest's power button first). */
  running: VmmDriver | undefined;
  /** The driver the VM was made with, if this host has it: it releases what it made outside the folder. */
  owner: VmmDriver | undefined;
  timeoutMs: number;
}

/**
 * Removes a VM from the host: its VMM (and any stray one running from its folder), its pid file,
 * what its driver made elsewhere, its network devices, its folder. Every step is safe to repeat: deleting a
 * VM that is half gone, or not here, finishes the job.
 */
export function deleteVmPlan(store: VmStore, network: HostNetwork, supervisor: ProcessSupervisor, processes: VmmProcessFinder, input: DeleteVmInput): Step[] {
  const { vm } = input;
  return [
    ...(input.running ? [stopVmm(input.running, supervisor, vm, input.timeoutMs)] : []),
    killStrayVmms(processes, supervisor, vm.id),
    forgetVmm(supervisor, vm),
    ...[releaseDriver(input.owner, vm)].filter((step): step is Step => step !== undefined),
    deleteNic(network, vm.id),
    removeVmFolder(store, vm),
  ];
}
