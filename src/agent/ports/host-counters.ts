import type { VmMetricsRecord } from '../../contracts/observe-api.js';

/** What the host counts for a VM beside its VMM: the process's CPU and memory, the TAP's traffic. */
export interface HostCounters {
  /** CPU time (user + system) and resident memory of a process; undefined once it is gone. */
  processUsage(pid: number): Promise<{ cpuSeconds: number; rssBytes: number } | undefined>;
  /**
   * A TAP's counters seen from the guest; zeros for no TAP (or one gone). With `pid`, the TAP is
   * the one of that name in the process's network namespace (a VM's `tap0`, read through its VMM).
   */
  guestNet(tap: string | null, pid?: number): Promise<VmMetricsRecord['net']>;
}
