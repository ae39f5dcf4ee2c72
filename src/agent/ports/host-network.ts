import type { NicNetwork } from '../../contracts/machine-spec.js';

/** A NIC on a network, as its host plumbs it: the network, the address IPAM gave it, its MAC (the DHCP server's static lease). */
export interface NetworkNic {
  network: NicNetwork;
  ip: string;
  mac: string;
}

/**
 * The host side of guest networking: one TAP per NIC, on the bridge of the NIC's network (made
 * with its first NIC on the host, with the network's rules, and removed with its last), or, for a
 * NIC on no network, on the host's flat bridge.
 */
export interface HostNetwork {
  /**
   * Creates the TAP (or recreates a stale one of ours), attached to its bridge and up; owned by
   * `owner` when given (the VM's VMM runs as that user and must open it), else by root alone.
   * With `nic`, the network's bridge is made or corrected, and its rules written anew, first, and
   * its DHCP server (where the host runs them) gets the NIC's lease.
   */
  ensureTap(name: string, owner?: { uid: number; gid: number }, nic?: NetworkNic): Promise<void>;
  /** Removes the TAP if it exists, and its lease; its network's bridge, rules and DHCP server when it was the last on it. */
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
