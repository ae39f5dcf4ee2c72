import type { AgentVm } from '../../contracts/agent-vm-api.js';
import { tapNameOf } from '../../contracts/host-names.js';
import type { LogSource } from '../../contracts/observe-api.js';
import type { MachineSpec, RateLimit } from '../../contracts/machine-spec.js';
import type { VmLayout } from '../../contracts/vm-layout.js';
import { NexusError } from '../../kit/nexus-error.js';
import { sameMachine } from '../domain/machine-spec-rules.js';
import { deleteVmPlan } from '../plans/delete-vm.js';
import { ensureVmPlan, resolveSpec } from '../plans/ensure-vm.js';
import { launchVmPlan } from '../plans/launch-vm.js';
import { runPlan } from '../plans/plan.js';
import type { StoredVm } from '../ports/vm-store.js';
import { hostDeviceOf, makeNic, networkNicOf } from '../steps/network-steps.js';
import type { VmContext } from './vm-context.js';

/** How {@link VmService.stopAll} ends the VMs. */
export interface StopAllOptions {
  /** How many VMs are stopped at once: each stop waits on its guest, and the guests share the host's CPUs. */
  concurrency: number;
  /** How long each guest gets to power off before its VMM is ended. */
  timeoutMs: number;
  /** Once aborted, the VMMs still running are killed by pid at once instead of waiting for their guests. */
  force?: AbortSignal;
}

/**
 * The agent's VM lifecycle use cases. Every operation on one VM holds its lock, reads the world
 * (the VM's folder and its VMM) rather than remembered state, and is safe to repeat; host work
 * runs as a plan of steps that a failure undoes.
 */
export class VmService {
  constructor(private readonly ctx: VmContext) {}

  /**
   * Records the spec and prepares the host (folder, private drive copies, TAP). Repeating it with
   * the same spec changes nothing; a different spec is refused while the VM runs. A failure undoes
   * everything this call created.
   */
  ensure(id: string, requested: MachineSpec): Promise<AgentVm> {
    return this.ctx.withVm(id, async (vm) => {
      const { store, network } = this.ctx.ports;
      const driver = this.ctx.driverFor(requested.driver);
      driver.validate?.(requested);
      const existing = await store.read(vm);
      const process = existing ? await this.ctx.liveProcess(vm) : undefined;
      const spec = await resolveSpec(store, vm, requested, existing?.spec);
      if (existing && process && !sameMachine(existing.spec, spec)) {
        throw new NexusError('conflict', `VM ${id} is running with another spec`, { suggestion: 'Stop it before changing its spec.' });
      }
      if (spec.nics.length > 0) await this.refuseTapClash(vm);
      await runPlan('ensure', ensureVmPlan(store, network, { vm, requested, spec, driver, running: process !== undefined }), this.ctx.log);
      return this.ctx.describe(vm);
    });
  }

  /**
   * The PRD's fine-grained step: makes (or remakes) the VM's TAP, attached to the bridge. The VM
   * must be ensured with a NIC, and not running (its VMM holds the TAP).
   */
  ensureTap(id: string): Promise<{ tap: string }> {
    return this.ctx.withVm(id, async (vm) => {
      const stored = await this.ctx.requireStored(vm);
      if (stored.spec.nics.length === 0) throw new NexusError('conflict', `VM ${id} has no NIC`, { suggestion: 'Ensure it with nics: [{}].' });
      const driver = this.ctx.driverFor(stored.driver);
      if (!(await this.ctx.liveProcess(vm)))
        await runPlan('make TAP', [makeNic(this.ctx.ports.network, id, async () => driver.vmmUser?.(vm), networkNicOf(id, stored.spec))], this.ctx.log);
      return { tap: hostDeviceOf(id, stored.spec) ?? tapNameOf(id) };
    });
  }

  /**
   * The PRD's fine-grained step: starts the VMM process with the guest not yet running (QEMU
   * `-S`, Firecracker before InstanceStart); `resume` (or `start`) boots it. Idempotent.
   */
  spawn(id: string): Promise<AgentVm> {
    return this.ctx.withVm(id, async (vm) => {
      const stored = await this.ctx.requireStored(vm);
      if (!(await this.ctx.liveProcess(vm))) await this.launch(vm, stored, true);
      return this.ctx.describe(vm);
    });
  }

  /** Changes a drive's throttle: at once on a running VM, and in the spec for every later start. */
  updateDriveRateLimit(id: string, driveId: string, limit: RateLimit): Promise<AgentVm> {
    return this.ctx.withVm(id, async (vm) => {
      const stored = await this.ctx.requireStored(vm);
      const driver = this.ctx.driverFor(stored.driver);
      if (!stored.spec.drives.some((drive) => drive.id === driveId)) {
        throw new NexusError('not_found', `VM ${id} has no drive ${driveId}`, {
          suggestion: `Its drives: ${stored.spec.drives.map((d) => d.id).join(', ') || 'none'}.`,
        });
      }
      if (!driver.capabilities.driveRateLimits) throw new NexusError('conflict', `the ${driver.name} driver cannot limit drives`);
      if (await this.ctx.liveProcess(vm)) await driver.updateDriveRateLimit(vm, driveId, limit);
      const spec = { ...stored.spec, drives: stored.spec.drives.map((drive) => (drive.id === driveId ? { ...drive, rate_limit: limit } : drive)) };
      await this.ctx.ports.store.write(vm, { spec, driver: stored.driver });
      return this.ctx.describe(vm);
    });
  }

  act(id: string, action: 'start' | 'pause' | 'resume' | 'stop', timeoutMs = 10_000): Promise<AgentVm> {
    return this.ctx.withVm(id, async (vm) => {
      const stored = await this.ctx.requireStored(vm);
      const driver = this.ctx.driverFor(stored.driver);
      const process = await this.ctx.liveProcess(vm);
      switch (action) {
        case 'start':
          if (!process) {
            await this.launch(vm, stored, false);
            this.ctx.log.info({ vm_id: id, driver: driver.name }, 'VM started');
          } else if ((await driver.inspect(vm, process)) === 'paused') {
            // Spawned (or paused): starting means running its vCPUs.
            await driver.resume(vm);
          }
          break;
        case 'pause':
        case 'resume': {
          if (!driver.capabilities.pause) throw new NexusError('conflict', `the ${driver.name} driver cannot pause`);
          const state = await driver.inspect(vm, process);
          if (state !== 'running' && state !== 'paused') {
            throw new NexusError('conflict', `cannot ${action} VM ${id}: it is ${state}`, { suggestion: 'Start it first.' });
          }
          if (action === 'pause' && state === 'running') await driver.pause(vm);
          if (action === 'resume' && state === 'paused') await driver.resume(vm);
          break;
        }
        case 'stop':
          if (process) await this.ctx.stopVmm(vm, driver, process, timeoutMs);
          break;
      }
      return this.ctx.describe(vm);
    });
  }

  /** Stops the VM, deletes its TAP and its folder. Deleting a VM that is not here succeeds. */
  delete(id: string, timeoutMs = 10_000): Promise<void> {
    return this.ctx.withVm(id, async (vm) => {
      const { store, network, supervisor, processes } = this.ctx.ports;
      const stored = await store.read(vm);
      const running = (await this.ctx.liveProcess(vm)) ? this.ctx.driverFor(stored?.driver) : undefined;
      const owner = this.ctx.drivers.drivers.get(stored?.driver ?? this.ctx.drivers.defaultDriver);
      await runPlan('delete', deleteVmPlan(store, network, supervisor, processes, { vm, running, owner, timeoutMs }), this.ctx.log);
      this.ctx.log.info({ vm_id: id }, 'VM deleted');
    });
  }

  /**
   * Ends every VMM of this run dir, then removes the VMs' host network (their TAPs, then the bridge
   * and its NAT when nothing else uses them); the VM folders, disks included, stay for the next
   * start. For an agent whose VMs end with it (`nexus dev`). Each VM gets its driver's stop (the
   * guest's power button first), `concurrency` at a time; then the host sweep kills whatever still
   * runs (a failed stop, a VMM no pid file names) by pid and removes the network. Returns only once
   * no VMM is left; throws when that, or removing the network, failed.
   */
  async stopAll(options: StopAllOptions): Promise<void> {
    const { store, supervisor, sweeper } = this.ctx.ports;
    const ids = await store.ids();
    let running = 0;
    for (const id of ids) if (await supervisor.adopt(store.layout(id))) running++;
    this.ctx.log.info({ vms: running, concurrency: options.concurrency }, `stopping ${running} VMs`);
    // Every VM, not only the running ones: a stop waits for the VM's lock, so an operation still
    // under way (a start) finishes first and its VMM is stopped too.
    const queue = [...ids];
    const stopNext = async (): Promise<void> => {
      for (let id = queue.shift(); id !== undefined && !options.force?.aborted; id = queue.shift()) {
        await this.act(id, 'stop', options.timeoutMs).then(
          () => undefined,
          (error: unknown) => {
            // A folder whose ensure failed meanwhile has no spec any more: nothing of it runs.
            if ((error as NexusError).code !== 'not_found') this.ctx.log.error({ err: error, vm_id: id }, 'could not stop a VM; its VMM is killed');
          },
        );
      }
    };
    const stops = Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, queue.length)) }, stopNext));
    // Forced, the stops under way are not waited for: the sweep kills their VMMs.
    const forced = await Promise.race([stops.then(() => false), whenAborted(options.force).then(() => true)]);
    if (forced) this.ctx.log.warn({ vms: running }, 'forced: killing the VMMs still running instead of waiting for their guests');
    await sweeper.sweep();
    this.ctx.log.info({ vms: running }, 'every VMM has exited and the guest network is removed');
  }

  get(id: string): Promise<AgentVm> {
    return this.ctx.withVm(id, (vm) => this.ctx.describe(vm));
  }

  /**
   * Where a VM's log of `source` is: the guest console, or the VMM's own log (its driver says
   * which file). A VM the agent does not have is a 404.
   */
  async logFile(id: string, source: LogSource): Promise<{ path: string; vmDir: string }> {
    const vm = this.ctx.ports.store.layout(id);
    const stored = await this.ctx.requireStored(vm);
    return { path: source === 'console' ? vm.consoleLog : this.ctx.drivers.files[stored.driver](vm).vmmLog, vmDir: vm.dir };
  }

  /** A file under the VM folders, canonical, for the dev-mode log tail by path: anything else is a 403. */
  vmFolderFile(path: string): Promise<string> {
    return this.ctx.ports.store.vmFolderFile(path);
  }

  /** Boots the VM from its stored spec (its files checked again: the folder is not trusted). */
  private async launch(vm: VmLayout, given: StoredVm, paused: boolean): Promise<void> {
    const { store, network } = this.ctx.ports;
    // A fresh boot takes the address its boot args give it: the one a restored guest held is gone with its memory.
    const stored = bootedAfresh(given);
    if (stored !== given) await store.write(vm, stored);
    // A hibernated VM booted afresh: its saved memory would not match its disks from now on.
    await store.remove(vm.hibernationDir);
    const driver = this.ctx.driverFor(stored.driver);
    const running = async () => (await this.ctx.ports.supervisor.adopt(vm)) !== undefined;
    await runPlan('launch', launchVmPlan(store, network, { vm, stored, driver, paused, now: this.ctx.now, running }), this.ctx.log);
  }

  /** TAP names carry 32 bits of the id: refuse a VM whose TAP name another VM here already has. */
  private async refuseTapClash(vm: VmLayout): Promise<void> {
    const clash = (await this.ctx.ports.store.ids()).find((other) => other !== vm.id && tapNameOf(other) === tapNameOf(vm.id));
    if (clash) {
      throw new NexusError('conflict', `VM ${clash} on this host already uses TAP ${tapNameOf(vm.id)}`, {
        suggestion: 'Create the VM with another id (the TAP name comes from its first 8 hex digits).',
      });
    }
  }
}

/** The stored VM as a fresh boot has it: no NIC keeps an address of a guest restored from a snapshot. */
function bootedAfresh(stored: StoredVm): StoredVm {
  if (!stored.spec.nics.some((nic) => nic.guest_ip !== undefined)) return stored;
  return { ...stored, spec: { ...stored.spec, nics: stored.spec.nics.map(({ guest_ip: _frozen, ...nic }) => nic) } };
}

/** Resolves once `signal` is aborted; never without one. */
function whenAborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) resolve();
    else signal?.addEventListener('abort', () => resolve(), { once: true });
  });
}
