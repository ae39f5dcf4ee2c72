/** The host side of guest networking: one bridge per host, one TAP per NIC attached to it. */
export interface HostNetwork {
  /** Creates the TAP (or recreates a stale one of ours), attached to the bridge and up. */
  ensureTap(name: string): Promise<void>;
  /** Removes the TAP if it exists. */
  deleteTap(name: string): Promise<void>;
  /** Names of the TAP devices Nexus made that exist now. */
  listTaps(): Promise<string[]>;
}
