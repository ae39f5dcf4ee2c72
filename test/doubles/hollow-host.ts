/**
 * A hollow agent host, in the spirit of Kubernetes' kubemark: the real agent code (HTTP API,
 * VmService, enrollment, heartbeats) over a VMM driver, supervisor and network that keep VM state
 * in memory and run no process and make no TAP. For control-plane load and leak tests only: it
 * lives under test/, is never a production default, and is only ever passed to startAgent by a test.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HostCapacity } from '../../src/contracts/agent-api.js';
import type { MachineSpec, RateLimit, VmmName } from '../../src/contracts/machine-spec.js';
import type { VmLayout } from '../../src/contracts/vm-layout.js';
import type { AgentHost } from '../../src/agent/main.js';
import type { HostNetwork, NetworkNic } from '../../src/agent/ports/host-network.js';
import type { LaunchRequest, ProcessSupervisor } from '../../src/agent/ports/process-supervisor.js';
import type { SnapshotFiles, VmmCapabilities, VmmDriver, VmmRunState } from '../../src/agent/ports/vmm-driver.js';
import { NexusError } from '../../src/kit/nexus-error.js';
import type { ProcessIdentity } from '../../src/kit/process-identity.js';
import { nicDeviceOf } from '../../src/contracts/host-names.js';

export interface HollowOptions {
  /** How long a hollow boot takes. Default 0. */
  bootMs?: number;
  /** How long a hollow stop takes. Default 0. */
  stopMs?: number;
  /** Every Nth start fails with a VMM error (0: never). */
  failEveryNthStart?: number;
}

/** Pids far above any real pid_max, so a hollow process can never be mistaken for a real one. */
let nextPid = 100_000_000;

export class HollowSupervisor implements ProcessSupervisor {
  readonly processes = new Map<string, ProcessIdentity>();

  async launch({ vm }: LaunchRequest): Promise<ProcessIdentity> {
    const identity = { pid: nextPid++, startTicks: 0 };
    this.processes.set(vm.id, identity);
    return identity;
  }
  async adopt(vm: VmLayout): Promise<ProcessIdentity | undefined> {
    return this.processes.get(vm.id);
  }
  async isAlive(process: ProcessIdentity): Promise<boolean> {
    return [...this.processes.values()].some((entry) => entry.pid === process.pid);
  }
  async signal(process: ProcessIdentity, signal: NodeJS.Signals): Promise<void> {
    if (signal !== 'SIGKILL' && signal !== 'SIGTERM') return;
    for (const [id, entry] of this.processes) if (entry.pid === process.pid) this.processes.delete(id);
  }
  async waitForExit(process: ProcessIdentity): Promise<boolean> {
    return !(await this.isAlive(process));
  }
  async forget(vm: VmLayout): Promise<void> {
    this.processes.delete(vm.id);
  }
}

export class HollowNetwork implements HostNetwork {
  /** The devices made: TAPs of VMs on no network, namespaces of VMs on one (named as a real host names them). */
  readonly taps = new Set<string>();
  /** The network each device was last made on (absent: the flat bridge), with its address and MAC. */
  readonly nicOf = new Map<string, NetworkNic>();
  async ensureNic(vmId: string, _owner?: { uid: number; gid: number }, nic?: NetworkNic): Promise<void> {
    const device = nicDeviceOf(vmId, nic !== undefined);
    this.taps.add(device);
    if (nic) this.nicOf.set(device, structuredClone(nic));
    else this.nicOf.delete(device);
  }
  async removeDevice(name: string): Promise<void> {
    this.taps.delete(name);
    this.nicOf.delete(name);
  }
  async listDevices(): Promise<string[]> {
    return [...this.taps].sort();
  }
  async isConnected(name: string): Promise<boolean> {
    return this.taps.has(name);
  }
  /** No bridge here, and no process holds a hollow TAP: every TAP goes, given or not. */
  async tearDown(): Promise<void> {
    this.taps.clear();
    this.nicOf.clear();
  }
  async tearDownLeft(): Promise<string[]> {
    return [...this.taps].sort().map((tap) => `TAP ${tap}`);
  }
}

export class HollowDriver implements VmmDriver {
  readonly name: VmmName = 'qemu';
  readonly capabilities: VmmCapabilities = { pause: true, snapshot: true, gracefulStop: true, driveRateLimits: true, restoreAsNewVm: true };
  private readonly paused = new Set<string>();
  private starts = 0;

  constructor(
    private readonly supervisor: HollowSupervisor,
    private readonly options: HollowOptions,
  ) {}

  async start(vm: VmLayout, _spec: MachineSpec, options: { paused?: boolean } = {}): Promise<ProcessIdentity> {
    this.starts++;
    await sleep(this.options.bootMs ?? 0);
    if (this.options.failEveryNthStart && this.starts % this.options.failEveryNthStart === 0) {
      throw new NexusError('vmm_failed', 'hollow VMM: injected start failure');
    }
    if (options.paused) this.paused.add(vm.id);
    return this.supervisor.launch({ vm, binary: 'hollow', args: [] });
  }
  async inspect(vm: VmLayout, process: ProcessIdentity | undefined): Promise<VmmRunState> {
    if (!process || !(await this.supervisor.isAlive(process))) return 'stopped';
    return this.paused.has(vm.id) ? 'paused' : 'running';
  }
  async pause(vm: VmLayout): Promise<void> {
    this.paused.add(vm.id);
  }
  async resume(vm: VmLayout): Promise<void> {
    this.paused.delete(vm.id);
  }
  /** No guest, so no I/O: zeros, and a raw record that says so. */
  async sampleMetrics(): Promise<{ block: { read_bytes: number; write_bytes: number; read_ops: number; write_ops: number }; raw: unknown }> {
    return { block: { read_bytes: 0, write_bytes: 0, read_ops: 0, write_ops: 0 }, raw: { hollow: true } };
  }
  async stop(vm: VmLayout): Promise<void> {
    await sleep(this.options.stopMs ?? 0);
    this.paused.delete(vm.id);
    await this.supervisor.forget(vm);
  }
  /** No guest memory: a small state file that names the VM stands for it. */
  async snapshot(vm: VmLayout, dir: string): Promise<SnapshotFiles> {
    await mkdir(dir, { recursive: true });
    const stateFile = join(dir, 'state.bin');
    const state = JSON.stringify({ hollow: true, vm_id: vm.id });
    await writeFile(stateFile, state, { mode: 0o600 });
    return { stateFile, sizeBytes: Buffer.byteLength(state) };
  }
  /** A hollow VMM again, paused (as a restored VMM is until resumed), from a state file one of its snapshots wrote. */
  async restore(vm: VmLayout, _spec: MachineSpec, snapshot: SnapshotFiles): Promise<ProcessIdentity> {
    const state = JSON.parse(await readFile(snapshot.stateFile, 'utf8')) as { hollow?: boolean };
    if (!state.hollow) throw new NexusError('vmm_failed', `${snapshot.stateFile} is not a hollow VMM's state`);
    this.paused.add(vm.id);
    return this.supervisor.launch({ vm, binary: 'hollow', args: [] });
  }
  async updateDriveRateLimit(_vm: VmLayout, _driveId: string, _limit: RateLimit): Promise<void> {}
}

/** A big, always-available hollow host. */
export function hollowHost(options: HollowOptions = {}): AgentHost & { supervisor: HollowSupervisor; network: HollowNetwork } {
  const supervisor = new HollowSupervisor();
  const network = new HollowNetwork();
  const capacity: HostCapacity = {
    vcpus: 64,
    memory_mib: 256 * 1024,
    memory_available_mib: 256 * 1024,
    run_dir: '/hollow',
    disk_total_mib: 1024 * 1024,
    disk_available_mib: 1024 * 1024,
    vms_running: 0,
    kvm: { usable: false, reason: 'hollow host (test double)' },
    drivers: [{ name: 'qemu', available: true, version: 'hollow (test double)' }],
  };
  return {
    supervisor,
    network,
    drivers: new Map([['qemu', new HollowDriver(supervisor, options)]]),
    capacity: async () => ({ ...capacity, vms_running: supervisor.processes.size }),
  };
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
