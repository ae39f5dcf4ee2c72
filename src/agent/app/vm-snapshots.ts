import type { AgentVm, HostSnapshot, SnapshotInfo } from '../../contracts/agent-vm-api.js';
import type { MachineSpec } from '../../contracts/machine-spec.js';
import { dirname } from 'node:path';
import type { SnapshotLayout, VmLayout } from '../../contracts/vm-layout.js';
import { NexusError, messageOf } from '../../kit/nexus-error.js';
import { runPlan } from '../plans/plan.js';
import { restoreVmPlan } from '../plans/restore-vm.js';
import { instantiateVmPlan, instantiatedSpec } from '../plans/instantiate-vm.js';
import { snapshotVmPlan } from '../plans/snapshot-vm.js';
import { SNAPSHOT_STATE_FILE } from '../ports/vmm-driver.js';
import { asideOf, savedFilesIn } from '../steps/snapshot-steps.js';
import type { StoredVm } from '../ports/vm-store.js';
import { FREE_SPACE_SUGGESTION, MIB, requireRoom } from './disk-room.js';
import type { VmContext } from './vm-context.js';

/**
 * Snapshots of VMs on this host: kept on the host (`<run-dir>/snapshots/<id>/`, the manager's
 * snapshots, which outlive their VM), or in a VM's own folder, taken and restored in place.
 */
export class VmSnapshots {
  constructor(private readonly ctx: VmContext) {}

  /**
   * Captures a running (or paused) VM into a snapshot kept on the host: paused for the moment of
   * the capture (its VMM state, memory, and a copy of each writable drive, all of one instant),
   * then resumed, or stopped (`then: 'stop'`). A VM that was paused stays paused. Taking one again
   * with the same id answers the one taken (and stops the VM if asked to). A capture that fails
   * leaves no folder and the guest running again if it was; a disk that filled up while the drives
   * were copied is a 507 that says so.
   */
  take(vmId: string, snapshotId: string, then: 'resume' | 'stop' = 'resume'): Promise<{ snapshot: HostSnapshot; vm: AgentVm }> {
    return this.ctx.withVm(vmId, (vm) => this.ctx.locks.run(snapshotLock(snapshotId), () => this.takeHolding(vm, snapshotId, then)));
  }

  /** {@link take}, holding the VM and the snapshot id (so no delete, and no take for another VM, comes between). */
  private async takeHolding(vm: VmLayout, snapshotId: string, then: 'resume' | 'stop'): Promise<{ snapshot: HostSnapshot; vm: AgentVm }> {
    const { store } = this.ctx.ports;
    const stored = await this.ctx.requireStored(vm);
    const driver = this.ctx.driverFor(stored.driver);
    if (!driver.capabilities.snapshot) throw new NexusError('conflict', `the ${driver.name} driver cannot snapshot`);
    const layout = store.snapshotLayout(snapshotId);
    const process = await this.ctx.liveProcess(vm);
    const taken = await store.readSnapshot(layout);
    if (taken) {
      if (taken.vm_id !== vm.id) throw new NexusError('conflict', `snapshot ${snapshotId} is of another VM (${taken.vm_id})`);
      // A retried request: what it asked of the VM afterwards may not have happened the first time.
      if (then === 'stop' && process) await this.ctx.stopVmm(vm, driver, process, 10_000);
      return { snapshot: taken, vm: await this.ctx.describe(vm) };
    }
    const state = process ? await driver.inspect(vm, process) : 'stopped';
    if (!process || (state !== 'running' && state !== 'paused')) {
      throw new NexusError('conflict', `VM ${vm.id} is ${state}: only a running or paused VM is snapshotted`, {
        suggestion: 'Start it first; a stopped VM has no memory to capture.',
      });
    }
    await this.checkSpace(vm, stored, layout);
    await store.remove(layout.dir); // what an earlier try left half-written
    await store.createSnapshotFolder(layout);
    if (state === 'running') await driver.pause(vm);
    const began = this.ctx.now();
    try {
      const record = async (saved: SnapshotInfo): Promise<HostSnapshot> => {
        const stateBytes = await store.sizeOf(saved.state_file);
        const memoryBytes = saved.memory_file ? await store.sizeOf(saved.memory_file) : 0;
        return {
          id: snapshotId,
          vm_id: vm.id,
          driver: driver.name,
          created_at: began.toISOString(),
          size_bytes: stateBytes + memoryBytes + saved.drives.reduce((sum, drive) => sum + drive.size_bytes, 0),
          state_file: saved.state_file,
          state_size_bytes: stateBytes,
          ...(saved.memory_file ? { memory_file: saved.memory_file, memory_size_bytes: memoryBytes } : {}),
          drives: saved.drives,
          spec: stored.spec,
        };
      };
      await runPlan('snapshot', snapshotVmPlan(store, { vm, stored, driver, snapshotId, dir: layout.dir, record }).steps, this.ctx.log);
    } catch (error) {
      if (state === 'running')
        await driver.resume(vm).catch((resumeError: unknown) => this.ctx.log.error({ err: resumeError, vm_id: vm.id }, 'could not resume the VM'));
      // Judged before the folder goes: removing it frees what filled the disk.
      const filled = await store.freeSpace(layout.dir).then(
        (free) => free < FULL_BELOW_BYTES,
        () => false,
      );
      await store.remove(layout.dir);
      throw diskFullOr(error, layout.dir, filled);
    }
    if (then === 'stop') await this.ctx.stopVmm(vm, driver, process, 10_000);
    else if (state === 'running') await driver.resume(vm);
    else {
      // Paused before: a VMM that has just saved itself (QEMU's `postmigrate`) takes no second save
      // until it has run again; a moment's run puts it back to plainly paused.
      await driver.resume(vm);
      await driver.pause(vm);
    }
    const snapshot = await store.readSnapshot(layout);
    if (!snapshot) throw new NexusError('internal', `snapshot ${snapshotId} was taken but its record is gone`);
    this.ctx.log.info({ vm_id: vm.id, snapshot_id: snapshotId, size_bytes: snapshot.size_bytes, then }, 'snapshot taken');
    return { snapshot, vm: await this.ctx.describe(vm) };
  }

  /**
   * Refuses (507), before the guest is paused, a capture the disk cannot hold: room for all of its
   * memory (Firecracker writes it whole; QEMU only what the guest touched, but that can be all)
   * and for a copy of each writable drive as much of it as is allocated now.
   */
  private async checkSpace(vm: VmLayout, stored: StoredVm, layout: SnapshotLayout): Promise<void> {
    let needed = stored.spec.mem_mib * MIB;
    for (const drive of stored.spec.drives.filter((each) => !each.read_only)) needed += await this.ctx.ports.store.allocatedBytes(drive.path);
    await requireRoom(
      this.ctx.ports.store,
      dirname(layout.dir),
      needed,
      `a snapshot of VM ${vm.id}`,
      `its ${stored.spec.mem_mib} MiB of memory and a copy of its writable disks`,
    );
  }

  /** A snapshot kept on the host; a 404 when there is none (a folder without its record is not one yet). */
  async get(snapshotId: string): Promise<HostSnapshot> {
    const snapshot = await this.ctx.ports.store.readSnapshot(this.ctx.ports.store.snapshotLayout(snapshotId));
    if (!snapshot) throw new NexusError('not_found', `no snapshot ${snapshotId} on this host`);
    return snapshot;
  }

  /** Removes a snapshot kept on the host, complete or not (once a take of it is done); one that is not here is gone already. */
  async delete(snapshotId: string): Promise<void> {
    const layout = this.ctx.ports.store.snapshotLayout(snapshotId);
    await this.ctx.locks.run(snapshotLock(snapshotId), () => this.ctx.ports.store.remove(layout.dir));
    this.ctx.log.info({ snapshot_id: snapshotId }, 'snapshot deleted');
  }

  /**
   * Makes VM `vmId` from a snapshot kept on the host, running: its machine the snapshot's, its
   * disks private copies of the snapshot's, its NIC at its own address (the guest keeps the one
   * in its memory; its namespace translates). A VM that exists already is answered as it is (a
   * retried request); a failure leaves nothing of it.
   */
  instantiate(snapshotId: string, vmId: string, requested: MachineSpec): Promise<AgentVm> {
    return this.ctx.withVm(vmId, (vm) =>
      this.ctx.locks.run(snapshotLock(snapshotId), async () => {
        const { store, network, supervisor } = this.ctx.ports;
        if (await store.read(vm)) return this.ctx.describe(vm);
        const layout = store.snapshotLayout(snapshotId);
        const snapshot = await store.readSnapshot(layout);
        if (!snapshot) throw new NexusError('not_found', `no snapshot ${snapshotId} on this host`);
        const driver = this.ctx.driverFor(snapshot.driver);
        if (!driver.capabilities.restoreAsNewVm) {
          throw new NexusError('conflict', `the ${driver.name} driver here cannot restore a snapshot as a new VM`, {
            suggestion:
              "Its saved state names the drives of the VM it was taken of: run Firecracker under the jailer (NEXUS_JAILER), whose paths are every VM's.",
          });
        }
        const spec = await instantiatedSpec(store, vm, requested, snapshot);
        driver.validate?.(spec);
        const files = await savedFilesIn(store, layout.dir);
        const began = this.ctx.now().getTime();
        await runPlan(
          'instantiate',
          instantiateVmPlan(store, network, supervisor, { vm, spec, driver, snapshot: layout, files, now: this.ctx.now }),
          this.ctx.log,
        );
        this.ctx.log.info({ vm_id: vmId, snapshot_id: snapshotId, duration_ms: this.ctx.now().getTime() - began }, 'VM restored from a snapshot');
        return this.ctx.describe(vm);
      }),
    );
  }

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
      const dir = `${vm.snapshotsDir}/${snapshotId}`;
      if (!(await store.exists(`${dir}/${SNAPSHOT_STATE_FILE}`))) throw new NexusError('not_found', `VM ${id} has no snapshot ${snapshotId}`);
      const snapshot = () => savedFilesIn(store, dir);
      await runPlan('restore', restoreVmPlan(store, network, supervisor, { vm, stored, driver, dir, snapshot, now: this.ctx.now }), this.ctx.log);
      for (const drive of stored.spec.drives) await store.remove(asideOf(drive.path));
      this.ctx.log.info({ vm_id: id, snapshot_id: snapshotId }, 'VM restored');
      return this.ctx.describe(vm);
    });
  }
}

/** The lock key of a snapshot id (VM ids are the other keys of the one mutex; a UUID never starts so). */
export function snapshotLock(snapshotId: string): string {
  return `snapshot:${snapshotId}`;
}

/**
 * Free space under which a failed capture is taken to have filled the disk: a VMM that writes its
 * state through a pipe (QEMU's `exec:`) reports a full disk only as a broken pipe.
 */
const FULL_BELOW_BYTES = MIB;

/**
 * A capture that failed because the disk filled up says so (a 507), naming where: one that failed
 * with ENOSPC, or that left the disk `filled`. Anything else as it was.
 */
function diskFullOr(error: unknown, dir: string, filled: boolean): unknown {
  const text = `${(error as NodeJS.ErrnoException).code ?? ''} ${messageOf(error)}`;
  if (!filled && !/ENOSPC|No space left on device/i.test(text)) return error;
  return new NexusError('insufficient_storage', `the disk holding ${dir} filled up while the snapshot was written; what was written is removed`, {
    cause: error,
    suggestion: FREE_SPACE_SUGGESTION,
    terminal: false,
  });
}
