import type { ProcessIdentity } from '../../kit/process-identity.js';

export interface VmmProcess {
  pid: number;
  /** The VM the process runs for (found in its command line, or its jail). */
  vmId: string;
  command: string;
}

/**
 * The VMM processes of this run dir as the host's process table shows them, whether or not a pid
 * file still names them: what a crash mid-delete or a hand-made mess leaves behind.
 */
export interface VmmProcessFinder {
  scan(): Promise<VmmProcess[]>;
  /** The identity of `pid` (its start time), so a signal can never reach a reused pid; undefined once it has exited. */
  identify(pid: number): Promise<ProcessIdentity | undefined>;
}
