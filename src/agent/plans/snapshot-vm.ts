import type { SnapshotInfo } from '../../contracts/agent-vm-api.js';
import type { VmLayout } from '../../contracts/vm-layout.js';
import type { StoredVm, VmStore } from '../ports/vm-store.js';
import type { VmmDriver } from '../ports/vmm-driver.js';
import { captureVmm, copySnapshotDrive, recordSnapshot } from '../steps/snapshot-steps.js';
import type { Step } from './plan.js';

export interface SnapshotVmInput {
  vm: VmLayout;
  stored: StoredVm;
  driver: VmmDriver;
  snapshotId: string;
  dir: string;
  /** What `snapshot.json` holds, made from what was saved; default: that, as it is. */
  record?: (saved: SnapshotInfo) => Promise<unknown>;
}

/**
 * Saves a paused VM into a snapshot folder: the VMM's state, then a copy of every writable drive
 * taken at the same moment, then `snapshot.json`. Answers the steps, and the record they fill in.
 */
export function snapshotVmPlan(store: VmStore, input: SnapshotVmInput): { steps: Step[]; snapshot: () => SnapshotInfo } {
  const { vm, stored, driver, dir } = input;
  const info: SnapshotInfo = { snapshot_id: input.snapshotId, state_file: '', size_bytes: 0, drives: [] };
  const snapshot = () => info;
  const steps = [
    captureVmm(driver, store, vm, dir, (files) => {
      info.state_file = files.stateFile;
      info.size_bytes = files.sizeBytes;
      if (files.memoryFile) info.memory_file = files.memoryFile;
    }),
    ...stored.spec.drives
      .filter((drive) => !drive.read_only)
      .map((drive) => copySnapshotDrive(store, drive, store.snapshotDrivePath(dir, drive.id), (entry) => info.drives.push(entry))),
    recordSnapshot(store, dir, () => (input.record ? input.record(info) : Promise.resolve(info))),
  ];
  return { steps, snapshot };
}
