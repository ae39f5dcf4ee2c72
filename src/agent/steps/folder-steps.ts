import type { VmLayout } from '../../contracts/vm-layout.js';
import type { Step } from '../plans/plan.js';
import type { StoredVm, VmStore } from '../ports/vm-store.js';

/** Makes the VM's folder while the VM has no spec yet; undone by removing the folder with all that went into it. */
export function createVmFolder(store: VmStore, vm: VmLayout): Step {
  return {
    name: `make the folder ${vm.dir}`,
    isNeeded: async () => (await store.read(vm)) === undefined,
    do: () => store.createFolder(vm),
    undo: () => store.removeFolder(vm),
  };
}

/** Copies an image-store disk into the VM's folder, once: a copy that is there already is the VM's disk, never replaced. */
export function copyPrivateDrive(store: VmStore, source: string, target: string): Step {
  return {
    name: `copy ${source} to ${target}`,
    isNeeded: async () => !(await store.exists(target)),
    do: () => store.copyDisk(source, target),
    undo: () => store.remove(target),
  };
}

/** Records the spec, when it differs from the one stored. */
export function storeSpec(store: VmStore, vm: VmLayout, stored: StoredVm): Step {
  return {
    name: 'store the spec',
    isNeeded: async () => JSON.stringify(await store.read(vm)) !== JSON.stringify(stored),
    do: () => store.write(vm, stored),
  };
}

/** Checks the spec's files again before a VMM opens them: the VM's folder is not trusted input. */
export function checkVmFiles(store: VmStore, vm: VmLayout, stored: StoredVm): Step {
  return {
    name: "check the VM's files",
    isNeeded: async () => true,
    do: async () => {
      await store.allowedFile(vm, 'kernel', stored.spec.kernel.path);
      if (stored.spec.initrd) await store.allowedFile(vm, 'initrd', stored.spec.initrd.path);
      for (const drive of stored.spec.drives) await store.allowedFile(vm, `drive ${drive.id}`, drive.path);
    },
  };
}

/** Empties the console log, so it holds this boot only. */
export function clearConsole(store: VmStore, vm: VmLayout): Step {
  return { name: 'clear the console log', isNeeded: async () => true, do: () => store.clearConsole(vm) };
}

/** Records that a VMM was launched for the VM (from now on, no process means `stopped`, not `configured`). */
export function markLaunched(store: VmStore, vm: VmLayout, now: () => Date): Step {
  return { name: 'mark the VM launched', isNeeded: async () => true, do: () => store.markLaunched(vm, now()) };
}

/** Removes the VM's folder: its spec, disks, snapshots and logs. */
export function removeVmFolder(store: VmStore, vm: VmLayout): Step {
  return { name: `remove ${vm.dir}`, isNeeded: () => store.hasFolder(vm), do: () => store.removeFolder(vm) };
}
