import type { Logger } from 'pino';
import type { AgentVm, AgentVmState } from '../../contracts/agent-vm-api.js';
import type { VmmName } from '../../contracts/machine-spec.js';
import type { VmLayout } from '../../contracts/vm-layout.js';
import { KeyedMutex } from '../../kit/keyed-mutex.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { ProcessIdentity } from '../../kit/process-identity.js';
import type { HostCounters } from '../ports/host-counters.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { HostSweeper } from '../ports/host-sweeper.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import type { StoredVm, VmStore } from '../ports/vm-store.js';
import type { VmmDriver, VmmFilesByDriver } from '../ports/vmm-driver.js';
import type { VmmProcessFinder } from '../ports/vmm-processes.js';
import { hostDeviceOf } from '../steps/network-steps.js';

/** The drivers this host has, and what the agent knows of every driver's files. */
export interface VmDrivers {
  drivers: ReadonlyMap<VmmName, VmmDriver>;
  /** Used when a spec names no driver. */
  defaultDriver: VmmName;
  files: VmmFilesByDriver;
}

/** The ports the agent's VM use cases work through. */
export interface VmPorts {
  store: VmStore;
  supervisor: ProcessSupervisor;
  network: HostNetwork;
  processes: VmmProcessFinder;
  counters: HostCounters;
  sweeper: HostSweeper;
}

/**
 * What every VM use case shares: the ports, the drivers, one lock per VM (so operations on one VM
 * never interleave, whichever use case runs them), and the reads they all start from.
 */
export class VmContext {
  readonly locks = new KeyedMutex();

  constructor(
    readonly drivers: VmDrivers,
    readonly ports: VmPorts,
    readonly log: Logger,
    readonly now: () => Date = () => new Date(),
  ) {}

  /** Runs `work` holding the VM's lock, with its layout (a malformed id is a 400 before anything runs). */
  async withVm<T>(id: string, work: (vm: VmLayout) => Promise<T>): Promise<T> {
    const vm = this.ports.store.layout(id);
    return this.locks.run(id, () => work(vm));
  }

  /** The driver of that name (default: the host's); one this host lacks is a 409 that says which it has. */
  driverFor(name: VmmName | undefined): VmmDriver {
    const chosen = name ?? this.drivers.defaultDriver;
    const driver = this.drivers.drivers.get(chosen);
    if (!driver) {
      throw new NexusError('conflict', `the ${chosen} driver is not available on this host`, {
        suggestion: `Available: ${[...this.drivers.drivers.keys()].join(', ') || 'none'}; GET /agent/v1/capacity says why.`,
      });
    }
    return driver;
  }

  async requireStored(vm: VmLayout): Promise<StoredVm> {
    const stored = await this.ports.store.read(vm);
    if (!stored) throw new NexusError('not_found', `no VM ${vm.id} on this host`, { suggestion: 'PUT /agent/v1/vms/:id with a MachineSpec first.' });
    return stored;
  }

  /** The VM's live process; a pid file naming a dead one is cleared (with its cgroup) on the way. */
  async liveProcess(vm: VmLayout): Promise<ProcessIdentity | undefined> {
    const process = await this.ports.supervisor.adopt(vm);
    if (!process && (await this.ports.store.exists(vm.pidFile))) await this.ports.supervisor.forget(vm);
    return process;
  }

  /** Stops the VM's VMM (the guest gets `timeoutMs` to power off) and forgets its process. Call holding the VM. */
  async stopVmm(vm: VmLayout, driver: VmmDriver, process: ProcessIdentity, timeoutMs: number): Promise<void> {
    await driver.stop(vm, process, timeoutMs);
    await this.ports.supervisor.forget(vm);
    this.log.info({ vm_id: vm.id }, 'VM stopped');
  }

  /** The VM as the agent sees it now: its stored spec, and its state as its VMM reports it. */
  async describe(vm: VmLayout): Promise<AgentVm> {
    const stored = await this.requireStored(vm);
    const driver = this.drivers.drivers.get(stored.driver);
    const process = await this.ports.supervisor.adopt(vm);
    let state: AgentVmState;
    if (!driver) state = 'failed';
    else {
      const vmmState = await driver.inspect(vm, process);
      state =
        vmmState !== 'stopped'
          ? vmmState
          : (await this.ports.store.exists(vm.hibernationRecord))
            ? 'hibernated'
            : (await this.ports.store.isLaunched(vm))
              ? 'stopped'
              : 'configured';
    }
    // A spec.json naming no driver we know (damaged by hand) still describes the VM, failed.
    const files = this.drivers.files[stored.driver]?.(vm) ?? { controlSocket: vm.sockDir, processLog: vm.vmmLog, vmmLog: vm.vmmLog };
    const tap = hostDeviceOf(vm.id, stored.spec);
    return {
      id: vm.id,
      driver: stored.driver,
      state,
      pid: process?.pid ?? null,
      tap,
      tap_present: tap ? await this.ports.network.isConnected(tap) : null,
      api_socket: files.controlSocket,
      console_log: vm.consoleLog,
      vmm_log: files.processLog,
      spec: stored.spec,
    };
  }
}
