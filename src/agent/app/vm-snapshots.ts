import type { AgentVm, SnapshotInfo } from '../../contracts/agent-vm-api.js';
import { NexusError } from '../../kit/nexus-error.js';
import { runPlan } from '../plans/plan.js';
import { restoreVmPlan } from '../plans/restore-vm.js';
import { snapshotVmPlan } from '../plans/snapshot-vm.js';
import { SNAPSHOT_MEMORY_FILE, SNAPSHOT_STATE_FILE } from '../ports/vmm-driver.js';
import { asideOf } from '../steps/snapshot-steps.js';
import type { VmContext } from './vm-context.js';

/** Snapshots of a VM on this host, taken and restored in place (the VM's folder keeps them). */
export class VmSnapshots {
  constructor(private readonly ctx: VmContext) {}

  /** Saves a paused VM: VMM state plus a copy of every writable drive taken at the same moment. */
  snapshot(id: string): Promise<{ vm: AgentVm; snapshot: SnapshotInfo }> {
    return this.ctx.withVm(id, async (vm) => {
      const stored = await this.ctx.requireStored(vm);
      const driver = this.ctx.driverFor(stored.driver);
      if (!driver.capabilities.snapshot) throw new NexusError('conflict', `the ${driver.name} driver cannot snapshot`);
      if (!(await this.ctx.liveProcess(vm))) throw new NexusError('conflict', `VM ${id} is not running`, { suggestion: 'Start and pause it first.' });
      const snapshotId = `s-${this.ctx.now().getTime().toString(36)}`;
      const plan = snapshotVmPlan(this.ctx.ports.store, { vm, stored, driver, snapshotId, dir: `${vm.snapshotsDir}/${snapshotId}` });
      await runPlan('snapshot', plan.steps, this.ctx.log);
      return { vm: await this.ctx.describe(vm), snapshot: plan.snapshot() };
    });
  }

  /**
   * Replaces a stopped VM's guest with a snapshot of it, in a fresh VMM process, and resumes it.
   * The VM's disks are kept aside until the restore has worked, and put back if it has not.
   */
  restore(id: string, snapshotId: string): Promise<AgentVm> {
    return this.ctx.withVm(id, async (vm) => {
      const { store, network, supervisor } = this.ctx.ports;
      const stored = await this.ctx.requireStored(vm);
      const driver = this.ctx.driverFor(stored.driver);
      if (await this.ctx.liveProcess(vm)) {
        throw new NexusError('conflict', `VM ${id} is running`, { suggestion: 'Stop it before restoring a snapshot into it.' });
      }
      // Every path comes from the layout, none from snapshot.json: the VM's folder is not trusted input.
      const dir = `${vm.snapshotsDir}/${snapshotId}`;
      const stateFile = `${dir}/${SNAPSHOT_STATE_FILE}`;
      const memoryFile = `${dir}/${SNAPSHOT_MEMORY_FILE}`;
      if (!(await store.exists(stateFile))) throw new NexusError('not_found', `VM ${id} has no snapshot ${snapshotId}`);
      const snapshot = async () => ({ stateFile, ...((await store.exists(memoryFile)) ? { memoryFile } : {}), sizeBytes: await store.sizeOf(stateFile) });
      await runPlan('restore', restoreVmPlan(store, network, supervisor, { vm, stored, driver, dir, snapshot, now: this.ctx.now }), this.ctx.log);
      for (const drive of stored.spec.drives) await store.remove(asideOf(drive.path));
      this.ctx.log.info({ vm_id: id, snapshot_id: snapshotId }, 'VM restored');
      return this.ctx.describe(vm);
    });
  }
}
