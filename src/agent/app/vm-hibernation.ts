import type { AgentVm } from '../../contracts/agent-vm-api.js';
import { NexusError } from '../../kit/nexus-error.js';
import { runPlan } from '../plans/plan.js';
import { checkVmFiles, markLaunched } from '../steps/folder-steps.js';
import { makeNic, networkNicOf } from '../steps/network-steps.js';
import { savedFilesIn } from '../steps/snapshot-steps.js';
import { restoreVmm, resumeVmm } from '../steps/vmm-steps.js';
import { MIB, requireRoom } from './disk-room.js';
import type { VmContext } from './vm-context.js';

/**
 * Hibernation: a VM's VMM state and memory saved in its folder and its VMM ended (its memory back
 * to the host), then restored in place: the same VM, disks and address, its guest going on from
 * the instant it was saved. Its disks are not copied: nothing writes them while it sleeps.
 */
export class VmHibernation {
  constructor(private readonly ctx: VmContext) {}

  /**
   * Saves a running (or paused) VM and ends its VMM. Asking again of a hibernated VM answers it as
   * it is. A save that fails leaves the guest running again if it was, and nothing saved.
   */
  hibernate(id: string): Promise<AgentVm> {
    return this.ctx.withVm(id, async (vm) => {
      const { store } = this.ctx.ports;
      const stored = await this.ctx.requireStored(vm);
      const driver = this.ctx.driverFor(stored.driver);
      if (!driver.capabilities.snapshot) throw new NexusError('conflict', `the ${driver.name} driver cannot save a VM`);
      const process = await this.ctx.liveProcess(vm);
      if (!process && (await store.exists(vm.hibernationRecord))) return this.ctx.describe(vm);
      const state = process ? await driver.inspect(vm, process) : 'stopped';
      if (!process || (state !== 'running' && state !== 'paused')) {
        throw new NexusError('conflict', `VM ${id} is ${state}: only a running or paused VM hibernates`, { suggestion: 'Start it first.' });
      }
      await requireRoom(store, vm.hibernationDir, stored.spec.mem_mib * MIB, `VM ${id}`, `its ${stored.spec.mem_mib} MiB of memory, to hibernate`);
      await store.remove(vm.hibernationDir); // what an earlier try left
      if (state === 'running') await driver.pause(vm);
      const began = this.ctx.now().getTime();
      try {
        const saved = await driver.snapshot(vm, vm.hibernationDir);
        await this.ctx.stopVmm(vm, driver, process, 0);
        await store.writeRecord(vm.hibernationRecord, { at: this.ctx.now().toISOString(), size_bytes: saved.sizeBytes, was: state });
      } catch (error) {
        if (await this.ctx.liveProcess(vm)) {
          if (state === 'running')
            await driver.resume(vm).catch((resumeError: unknown) => this.ctx.log.error({ err: resumeError, vm_id: id }, 'could not resume the VM'));
        }
        await store.remove(vm.hibernationDir);
        throw error;
      }
      this.ctx.log.info({ vm_id: id, duration_ms: this.ctx.now().getTime() - began }, 'VM hibernated');
      return this.ctx.describe(vm);
    });
  }

  /**
   * Restores a hibernated VM in place and runs it; its saved state is removed once it runs. Asking
   * again of a running VM answers it as it is; a VM that is not hibernated is a 409. A restore that
   * fails leaves it hibernated, to try again.
   */
  wake(id: string): Promise<AgentVm> {
    return this.ctx.withVm(id, async (vm) => {
      const { store, network, supervisor } = this.ctx.ports;
      const stored = await this.ctx.requireStored(vm);
      const driver = this.ctx.driverFor(stored.driver);
      if (await this.ctx.liveProcess(vm)) return this.ctx.describe(vm);
      if (!(await store.exists(vm.hibernationRecord))) {
        throw new NexusError('conflict', `VM ${id} is not hibernated`, { suggestion: 'Start it: it boots afresh.' });
      }
      const files = await savedFilesIn(store, vm.hibernationDir);
      const began = this.ctx.now().getTime();
      await runPlan(
        'wake',
        [
          checkVmFiles(store, vm, stored),
          ...(stored.spec.nics[0] ? [makeNic(network, vm.id, async () => driver.vmmUser?.(vm), networkNicOf(vm.id, stored.spec))] : []),
          markLaunched(store, vm, this.ctx.now),
          restoreVmm(driver, supervisor, vm, stored.spec, async () => files),
          resumeVmm(driver, vm),
        ],
        this.ctx.log,
      );
      await store.remove(vm.hibernationDir);
      this.ctx.log.info({ vm_id: id, duration_ms: this.ctx.now().getTime() - began }, 'VM woke');
      return this.ctx.describe(vm);
    });
  }
}
