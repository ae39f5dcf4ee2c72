import type { NicNetwork, NicPort } from '../../contracts/machine-spec.js';

/** A NIC on a network, as its host plumbs it: the network, the address IPAM gave it, its MAC (the DHCP server's static lease). */
export interface NetworkNic {
  network: NicNetwork;
  ip: string;
  mac: string;
  /**
   * The address the guest itself has, when it is not `ip`: a clone restored from a snapshot keeps
   * the address frozen in its memory, and its namespace translates between the two.
   */
  guestIp?: string;
  /** Guest ports published on the host's addresses (DNAT to `ip`). */
  ports?: readonly NicPort[];
}

/**
 * The host side of guest networking. A VM on a network lives in a network namespace of its own
 * (`nxv-<id>`), with its TAP (`tap0`) inside, a veth to the host, its routes, rules and DHCP server;
 * its network's rules on the host come with its first VM there and go with its last. A VM on no
 * network has a TAP (`tap-<id>`) on the host's flat bridge. Devices are named from the VM id: the
 * TAP, or the namespace and the host end of its veth, which share a name.
 */
export interface HostNetwork {
  /**
   * Plumbs the VM's NIC, or remakes what is stale of it: with `nic`, its namespace; without, its
   * TAP on the flat bridge. The TAP is owned by `owner` when given (the VM's VMM runs as that user
   * and must open it), else by root alone.
   */
  ensureNic(vmId: string, owner?: { uid: number; gid: number }, nic?: NetworkNic): Promise<void>;
  /** Removes a device by its name (`tap-…`, or `nxv-…`: a namespace with all it holds), if it exists. */
  removeDevice(name: string): Promise<void>;
  /** The devices Nexus made that exist now: TAPs, and VM namespaces (or their veths). */
  listDevices(): Promise<string[]>;
  /** Whether the device carries traffic: the TAP is there, or the namespace and its veth to the host both are. */
  isConnected(name: string): Promise<boolean>;
  /**
   * Removes `devices` and every other Nexus TAP on the bridge that no process holds, and what a
   * crash left of networks (rules, DHCP servers), then, once nothing else is attached to the
   * bridge, the NAT and the bridge itself when it is Nexus's. Only for an agent whose VMs end with
   * it (`nexus dev`), once none of its VMMs runs: a production agent keeps its network.
   */
  tearDown(devices: string[]): Promise<void>;
  /** What `tearDown(devices)` would remove that is still there, each named for a message; empty once it is all gone. */
  tearDownLeft(devices: string[]): Promise<string[]>;
}
