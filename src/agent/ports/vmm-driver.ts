import type { VmMetricsRecord } from '../../contracts/observe-api.js';
import type { MachineSpec, RateLimit, VmmName } from '../../contracts/machine-spec.js';
import type { ProcessIdentity } from '../../kit/process-identity.js';
import type { VmLayout } from '../../contracts/vm-layout.js';

/** What a driver can do. Plans branch on these, never on the driver's name. */
export interface VmmCapabilities {
  pause: boolean;
  snapshot: boolean;
  /** Asks the guest to power off (ACPI button, Ctrl-Alt-Del) before forcing. */
  gracefulStop: boolean;
  driveRateLimits: boolean;
  /**
   * Restores another VM's snapshot as a new VM: the VMM's saved state names no file or device of
   * the VM it was taken of (QEMU's names none; Firecracker's names its drives' paths, which only
   * the jailer makes the same for every VM).
   */
  restoreAsNewVm: boolean;
}

/** What the VMM says about its guest. `stopped`: no process. */
export type VmmRunState = 'starting' | 'running' | 'paused' | 'stopped' | 'failed';

/** Snapshot file names inside a snapshot's folder, the same for every driver. */
export const SNAPSHOT_STATE_FILE = 'state.bin';
export const SNAPSHOT_MEMORY_FILE = 'memory.bin';

export interface SnapshotFiles {
  /** VMM state (and, for QEMU, memory) in one stream. */
  stateFile: string;
  /** Guest memory, where the VMM writes it apart (Firecracker). */
  memoryFile?: string;
  sizeBytes: number;
}

/** The files a driver's VMM has in a VM's folder: known for every driver, available on this host or not. */
export interface VmmFiles {
  /** Where the VMM is controlled (QEMU's QMP socket, Firecracker's API socket). */
  controlSocket: string;
  /** The VMM process's standard output and error. */
  processLog: string;
  /** The VMM's own log, the log API's `source=vmm` (Firecracker's logger file; QEMU's standard error). */
  vmmLog: string;
}

/** Each driver's {@link VmmFiles}, by name: what the agent shows of a VM whose driver this host lacks too. */
export type VmmFilesByDriver = Readonly<Record<VmmName, (vm: VmLayout) => VmmFiles>>;

/**
 * The seam between the agent and a VMM. Every operation is given the VM's layout (its folder) and
 * reads the rest from the VMM itself, so a driver holds no state an agent restart would lose.
 */
export interface VmmDriver {
  readonly name: VmmName;
  readonly capabilities: VmmCapabilities;
  /**
   * Starts a VMM process for the spec and boots the guest; answers once the VMM is controllable.
   * With `paused`, the process is up and configured but the guest has not run (resume boots it).
   */
  start(vm: VmLayout, spec: MachineSpec, options?: { paused?: boolean }): Promise<ProcessIdentity>;
  inspect(vm: VmLayout, process: ProcessIdentity | undefined): Promise<VmmRunState>;
  pause(vm: VmLayout): Promise<void>;
  resume(vm: VmLayout): Promise<void>;
  /** Graceful stop, forced after `timeoutMs`. Resolves once the process is gone. */
  stop(vm: VmLayout, process: ProcessIdentity, timeoutMs: number): Promise<void>;
  /** Saves a paused guest into `dir` (made if missing). The guest stays paused. */
  snapshot(vm: VmLayout, dir: string): Promise<SnapshotFiles>;
  /** Starts a fresh VMM process from a snapshot; the guest is left paused. */
  restore(vm: VmLayout, spec: MachineSpec, snapshot: SnapshotFiles): Promise<ProcessIdentity>;
  /** Changes a running VM's drive throttle; 0 or absent means unlimited. */
  updateDriveRateLimit(vm: VmLayout, driveId: string, limit: RateLimit): Promise<void>;
  /**
   * Removes what the driver made for the VM outside its folder (a jail), once no process runs.
   * Called when the VM is deleted; drivers that keep everything in the folder need not have it.
   */
  release?(vm: VmLayout): Promise<void>;
  /**
   * Who the VM's VMM runs as when that is not the agent's own user (a jailed Firecracker: a uid and
   * gid of the VM's own, held until the VM is deleted); its TAP is made owned by it, so the VMM can
   * open it. Absent, or undefined: the VMM runs as the agent.
   */
  vmmUser?(vm: VmLayout): Promise<{ uid: number; gid: number } | undefined>;
  /**
   * Folders the driver made outside VM folders (jails) for VMs that `hasVm` says have no folder,
   * and in which no VMM runs any more: leftovers for the orphan sweep, removed with `rm -r`, so
   * only what is certainly the driver's.
   */
  leftoverDirs?(hasVm: (vmId: string) => Promise<boolean>): Promise<string[]>;
  /** Throws (validation_failed) for a spec this driver cannot run, so it is refused at ensure. */
  validate?(spec: MachineSpec): void;
  /**
   * The VMM's own counters for a running VM: block I/O totals since it started, and its raw
   * record. The agent adds CPU, memory (from /proc) and network (from the TAP) itself.
   */
  sampleMetrics(vm: VmLayout): Promise<{ block: VmMetricsRecord['block']; raw: unknown }>;
  /** Where the VMM's own HTTP API listens, for the agent's socket proxy; drivers without one have none. */
  apiSocket?(vm: VmLayout): Promise<string>;
}
