/**
 * Host resources are named from the VM id, so any leftover can be traced back to its VM.
 * Linux interface names hold at most 15 characters: `tap-` + 8 hex = 12.
 */
export function tapNameOf(vmId: string): string {
  return `tap-${hexOf(vmId).slice(0, 8)}`;
}

/**
 * A deterministic MAC for a VM's NIC: locally administered, unicast (first octet 0x06), then five
 * octets of the id.
 */
export function macOf(vmId: string): string {
  const hex = hexOf(vmId).slice(0, 10);
  return ['06', ...(hex.match(/../g) ?? [])].join(':');
}

/** TAP names Nexus makes: anything else with this prefix on a host is foreign. */
export const TAP_NAME_PATTERN = /^tap-[0-9a-f]{8}$/;

/**
 * The network namespace a VM on a network lives in, and the host end of the veth pair that joins
 * it to the host: both `nxv-` + 8 hex of the VM id (namespace names and device names are apart).
 */
export function vmNetnsNameOf(vmId: string): string {
  return `nxv-${vmKeyOf(vmId)}`;
}

/** Names of VM namespaces and of their host-side veths: anything else with this prefix is foreign. */
export const VM_NETNS_PATTERN = /^nxv-[0-9a-f]{8}$/;

/** Where `ip netns` keeps a namespace, for programs that join it by path (nsenter, Firecracker's jailer). */
export function netnsPathOf(netns: string): string {
  return `/run/netns/${netns}`;
}

/** Inside every VM namespace the TAP has this one name, so a VMM restored from a snapshot finds it again. */
export const GUEST_TAP = 'tap0';

/**
 * The device on the host that carries a VM's traffic, for counters and presence: the TAP of a VM
 * on the host's flat bridge, or the host end of the veth to the namespace of a VM on a network.
 */
export function nicDeviceOf(vmId: string, onNetwork: boolean): string {
  return onNetwork ? vmNetnsNameOf(vmId) : tapNameOf(vmId);
}

/**
 * Where the VMM finds a VM's TAP: for a VM on a network, `tap0` inside its namespace (the VMM is
 * started in it); else the VM's own TAP on the host.
 */
export function tapPlacementOf(vmId: string, onNetwork: boolean): { tap: string; netns?: string } {
  return onNetwork ? { tap: GUEST_TAP, netns: netnsPathOf(vmNetnsNameOf(vmId)) } : { tap: tapNameOf(vmId) };
}

/**
 * The key a network's rules on a host are named from: 8 hex digits of its id (the nftables table
 * `nexus_net_<key>`, or the iptables chains `NXN-<key>-…`).
 */
export function networkKeyOf(networkId: string): string {
  return hexOf(networkId).slice(0, 8);
}

/** The nftables table (family inet) holding a network's rules on a host: isolation, egress, NAT. */
export function networkTableNameOf(networkId: string): string {
  return `nexus_net_${networkKeyOf(networkId)}`;
}

/** The key a VM's published ports on its host are named from (`nexus_pub_<key>`, `NXP-<key>-…`): its namespace's, 8 hex digits of its id. */
export function vmKeyOf(vmId: string): string {
  return hexOf(vmId).slice(0, 8);
}

/** The nftables table (family inet) on a host holding the ports a VM publishes there. */
export function publishTableNameOf(vmId: string): string {
  return `nexus_pub_${vmKeyOf(vmId)}`;
}

function hexOf(vmId: string): string {
  return vmId.toLowerCase().replace(/[^0-9a-f]/g, '');
}
