import type { SnapshotInfo } from '../../contracts/agent-vm-api.js';
import type { VmLayout } from '../../contracts/vm-layout.js';
import type { Step } from '../plans/plan.js';
import type { VmStore } from '../ports/vm-store.js';
import { SNAPSHOT_MEMORY_FILE, SNAPSHOT_STATE_FILE, type SnapshotFiles, type VmmDriver } from '../ports/vmm-driver.js';

/** Saves the paused guest's VMM state (and memory) into `dir`; undone by removing the folder, all of it. */
export function captureVmm(driver: VmmDriver, store: VmStore, vm: VmLayout, dir: string, saved: (files: SnapshotFiles) => void): Step {
  return {
    name: `save ${driver.name} state to ${dir}`,
    isNeeded: async () => true,
    do: async () => {
      try {
        saved(await driver.snapshot(vm, dir));
      } catch (error) {
        await store.remove(dir);
        throw error;
      }
    },
    undo: () => store.remove(dir),
  };
}

/** Copies a writable drive beside the snapshot, taken while the guest is paused: the disk as the memory knows it. */
export function copySnapshotDrive(
  store: VmStore,
  drive: { id: string; path: string },
  copy: string,
  copied: (entry: SnapshotInfo['drives'][number]) => void,
): Step {
  return {
    name: `copy drive ${drive.id} into the snapshot`,
    isNeeded: async () => true,
    do: async () => {
      await store.copyDisk(drive.path, copy);
      copied({ id: drive.id, path: copy, size_bytes: await store.sizeOf(copy) });
    },
  };
}

/** Writes `snapshot.json`, last: a snapshot folder with it is complete. */
export function recordSnapshot(store: VmStore, dir: string, record: () => Promise<unknown>): Step {
  return { name: 'record the snapshot', isNeeded: async () => true, do: async () => store.writeRecord(`${dir}/snapshot.json`, await record()) };
}

/**
 * Puts a snapshot's copy of a drive in place of the VM's disk, keeping the disk aside (`.before-restore`)
 * until the restore has worked; undone by putting the disk back.
 */
export function putBackDrive(store: VmStore, drivePath: string, saved: string): Step {
  const aside = asideOf(drivePath);
  return {
    name: `put back ${drivePath} from the snapshot`,
    isNeeded: () => store.exists(saved),
    do: async () => {
      await store.move(drivePath, aside);
      try {
        await store.copyDisk(saved, drivePath);
      } catch (error) {
        await store.move(aside, drivePath);
        throw error;
      }
    },
    undo: () => store.move(aside, drivePath),
  };
}

/** Where {@link putBackDrive} keeps the VM's own disk until the restore has worked. */
export function asideOf(drivePath: string): string {
  return `${drivePath}.before-restore`;
}

/**
 * The VMM files saved in `dir` (a snapshot's folder, or a hibernated VM's), every path from the
 * folder's layout and none from its record: the record is not trusted input.
 */
export async function savedFilesIn(store: VmStore, dir: string): Promise<SnapshotFiles> {
  const stateFile = `${dir}/${SNAPSHOT_STATE_FILE}`;
  const memoryFile = `${dir}/${SNAPSHOT_MEMORY_FILE}`;
  return { stateFile, ...((await store.exists(memoryFile)) ? { memoryFile } : {}), sizeBytes: await store.sizeOf(stateFile) };
}
