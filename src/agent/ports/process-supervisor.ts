import type { ProcessIdentity } from '../../kit/process-identity.js';
import type { VmLayout } from '../../contracts/vm-layout.js';

export interface LaunchRequest {
  vm: VmLayout;
  binary: string;
  args: string[];
  /** Where stdout goes (appended) instead of the VM's vmm.log, e.g. a VMM that writes the guest console there. */
  stdoutPath?: string;
  /** A network namespace (its path) the process runs in, where the VM's TAP is; default: the agent's own. */
  netns?: string;
}

/**
 * Runs VMM processes so that they outlive the agent: launched detached, recorded in the VM's pid
 * file (pid + start time), and found again from it after an agent restart.
 */
export interface ProcessSupervisor {
  /** Starts the process, its stdout/stderr appended to the VM's vmm.log (or stdout to `stdoutPath`), and records it. */
  launch(request: LaunchRequest): Promise<ProcessIdentity>;
  /** The VM's recorded process if it still runs (a reused pid does not count). */
  adopt(vm: VmLayout): Promise<ProcessIdentity | undefined>;
  isAlive(process: ProcessIdentity): Promise<boolean>;
  /** Sends a signal, but only if the identity still names a live process. */
  signal(process: ProcessIdentity, signal: NodeJS.Signals): Promise<void>;
  /** Resolves true once the process has exited, false if it still runs after `timeoutMs`. */
  waitForExit(process: ProcessIdentity, timeoutMs: number): Promise<boolean>;
  /** Removes the VM's pid file. */
  forget(vm: VmLayout): Promise<void>;
}
