import type { VmLayout } from '../../contracts/vm-layout.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { StoredVm, VmStore } from '../ports/vm-store.js';
import type { VmmDriver } from '../ports/vmm-driver.js';
import { checkVmFiles, clearConsole, markLaunched } from '../steps/folder-steps.js';
import { makeNic, networkNicOf } from '../steps/network-steps.js';
import { startVmm } from '../steps/vmm-steps.js';
import type { Step } from './plan.js';

export interface LaunchVmInput {
  vm: VmLayout;
  stored: StoredVm;
  driver: VmmDriver;
  /** Up to the VMM process only: the guest runs on `resume`. */
  paused: boolean;
  now: () => Date;
  /** Whether a VMM runs for the VM now (then there is nothing to launch). */
  running: () => Promise<boolean>;
}

/** Boots a VM from its stored spec: its files checked again, its TAP, a fresh console log, the VMM. */
export function launchVmPlan(store: VmStore, network: HostNetwork, input: LaunchVmInput): Step[] {
  const { vm, stored, driver } = input;
  return [
    checkVmFiles(store, vm, stored),
    ...(stored.spec.nics[0] ? [makeNic(network, vm.id, async () => driver.vmmUser?.(vm), networkNicOf(vm.id, stored.spec))] : []),
    clearConsole(store, vm),
    markLaunched(store, vm, input.now),
    startVmm(driver, vm, stored.spec, { paused: input.paused, running: input.running }),
  ];
}
