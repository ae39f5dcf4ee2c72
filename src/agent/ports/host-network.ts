/** The host side of guest networking: one bridge per host, one TAP per NIC attached to it. */
export interface HostNetwork {
  /**
   * Creates the TAP (or recreates a stale one of ours), attached to the bridge and up; owned by
   * `owner` when given (the VM's VMM runs as that user and must open it), else by root alone.
   */
  ensureTap(name: string, owner?: { uid: number; gid: number }): Promise<void>;
  /** Removes the TAP if it exists. */
  deleteTap(name: string): Promise<void>;
  /** Names of the TAP devices Nexus made that exist now. */
  listTaps(): Promise<string[]>;
  /**
   * Removes `taps` and every other Nexus TAP on the bridge that no process holds, then, once nothing
   * else is attached to the bridge, the NAT and the bridge itself when it is Nexus's. Only for an
   * agent whose VMs end with it (`nexus dev`), once none of its VMMs runs: a production agent keeps
   * its network.
   */
  tearDown(taps: string[]): Promise<void>;
  /** What `tearDown(taps)` would remove that is still there, each named for a message; empty once it is all gone. */
  tearDownLeft(taps: string[]): Promise<string[]>;
}
