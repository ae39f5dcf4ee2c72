import type { VmMetricsRecord } from '../../contracts/observe-api.js';

/** What the host counts for a VM beside its VMM: the process's CPU and memory, the TAP's traffic. */
export interface HostCounters {
  /** CPU time (user + system) and resident memory of a process; undefined once it is gone. */
  processUsage(pid: number): Promise<{ cpuSeconds: number; rssBytes: number } | undefined>;
  /** A TAP's counters seen from the guest; zeros for no TAP (or one gone). */
  guestNet(tap: string | null): Promise<VmMetricsRecord['net']>;
}
