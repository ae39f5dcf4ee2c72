import type { MachineSpec, VmmName } from '../../contracts/machine-spec.js';
import type { ProcessIdentity } from '../../kit/process-identity.js';
import type { VmLayout } from '../domain/vm-layout.js';

/** What a driver can do. Plans branch on these, never on the driver's name. */
export interface VmmCapabilities {
  pause: boolean;
  snapshot: boolean;
  /** Asks the guest to power off (ACPI button, Ctrl-Alt-Del) before forcing. */
  gracefulStop: boolean;
  driveRateLimits: boolean;
}

/** What the VMM says about its guest. `stopped`: no process. */
export type VmmRunState = 'starting' | 'running' | 'paused' | 'stopped' | 'failed';

export interface SnapshotFiles {
  /** VMM state (and, for QEMU, memory) in one stream. */
  stateFile: string;
  /** Guest memory, where the VMM writes it apart (Firecracker). */
  memoryFile?: string;
  sizeBytes: number;
}

export interface DriveRateLimit {
  bytesPerSecond?: number;
  opsPerSecond?: number;
}

/**
 * The seam between the agent and a VMM. Every operation is given the VM's layout (its folder) and
 * reads the rest from the VMM itself, so a driver holds no state an agent restart would lose.
 */
export interface VmmDriver {
  readonly name: VmmName;
  readonly capabilities: VmmCapabilities;
  /** Starts a VMM process for the spec and boots the guest; answers once the VMM is controllable. */
  start(vm: VmLayout, spec: MachineSpec): Promise<ProcessIdentity>;
  inspect(vm: VmLayout, process: ProcessIdentity | undefined): Promise<VmmRunState>;
  pause(vm: VmLayout): Promise<void>;
  resume(vm: VmLayout): Promise<void>;
  /** Graceful stop, forced after `timeoutMs`. Resolves once the process is gone. */
  stop(vm: VmLayout, process: ProcessIdentity, timeoutMs: number): Promise<void>;
  /** Saves a paused guest into `dir`. The guest stays paused. */
  snapshot(vm: VmLayout, dir: string): Promise<SnapshotFiles>;
  /** Starts a fresh VMM process from a snapshot; the guest is left paused. */
  restore(vm: VmLayout, spec: MachineSpec, snapshot: SnapshotFiles): Promise<ProcessIdentity>;
  updateDriveRateLimit(vm: VmLayout, driveId: string, limit: DriveRateLimit): Promise<void>;
}
