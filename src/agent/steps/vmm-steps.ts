import type { MachineSpec } from '../../contracts/machine-spec.js';
import type { VmLayout } from '../../contracts/vm-layout.js';
import type { ProcessIdentity } from '../../kit/process-identity.js';
import type { Step } from '../plans/plan.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import type { VmmProcessFinder } from '../ports/vmm-processes.js';
import type { SnapshotFiles, VmmDriver } from '../ports/vmm-driver.js';

/** Starts the VMM for the spec when none runs; `paused`: the process is up, the guest has not run. */
export function startVmm(driver: VmmDriver, vm: VmLayout, spec: MachineSpec, options: { paused: boolean; running: () => Promise<boolean> }): Step {
  return {
    name: `start ${driver.name}`,
    isNeeded: async () => !(await options.running()),
    do: async () => {
      await driver.start(vm, spec, { paused: options.paused });
    },
  };
}

/** Starts a fresh VMM from a snapshot, its guest left paused; undone by stopping it at once. */
export function restoreVmm(driver: VmmDriver, supervisor: ProcessSupervisor, vm: VmLayout, spec: MachineSpec, snapshot: () => Promise<SnapshotFiles>): Step {
  let process: ProcessIdentity | undefined;
  return {
    name: `restore ${driver.name} from a snapshot`,
    isNeeded: async () => true,
    do: async () => {
      process = await driver.restore(vm, spec, await snapshot());
    },
    undo: async () => {
      if (!process) return;
      await driver.stop(vm, process, 0);
      await supervisor.forget(vm);
    },
  };
}

/** Runs the guest's vCPUs. */
export function resumeVmm(driver: VmmDriver, vm: VmLayout): Step {
  return { name: `resume the guest`, isNeeded: async () => true, do: () => driver.resume(vm) };
}

/** Stops the VMM the pid file names (the guest's power button first, when the driver has one), and forgets its pid file. */
export function stopVmm(driver: VmmDriver, supervisor: ProcessSupervisor, vm: VmLayout, timeoutMs: number): Step {
  return {
    name: `stop ${driver.name}`,
    isNeeded: async () => (await supervisor.adopt(vm)) !== undefined,
    do: async () => {
      const process = await supervisor.adopt(vm);
      if (process) await driver.stop(vm, process, timeoutMs);
      await supervisor.forget(vm);
    },
  };
}

/** Kills, by pid, any VMM running for the VM that no pid file names (a crash between launch and record, a hand-made one). */
export function killStrayVmms(finder: VmmProcessFinder, supervisor: ProcessSupervisor, vmId: string): Step {
  return {
    name: 'kill stray VMMs',
    isNeeded: async () => true,
    do: async () => {
      for (const stray of (await finder.scan()).filter((entry) => entry.vmId === vmId)) {
        const process = await finder.identify(stray.pid);
        if (process === undefined) continue;
        await supervisor.signal(process, 'SIGKILL');
        await supervisor.waitForExit(process, 5000);
      }
    },
  };
}

/** Clears the VM's pid file (and its cgroup). */
export function forgetVmm(supervisor: ProcessSupervisor, vm: VmLayout): Step {
  return { name: 'forget the VMM', isNeeded: async () => true, do: () => supervisor.forget(vm) };
}

/** Removes what the driver made for the VM outside its folder (a jail). */
export function releaseDriver(driver: VmmDriver | undefined, vm: VmLayout): Step | undefined {
  const release = driver?.release?.bind(driver);
  return release && { name: `release what ${driver?.name} holds for the VM`, isNeeded: async () => true, do: () => release(vm) };
}
