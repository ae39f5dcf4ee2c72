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

/** The bridge a network has on each host its VMs run on: `nxb-` + 8 hex of the network id. */
export function networkBridgeNameOf(networkId: string): string {
  return `nxb-${hexOf(networkId).slice(0, 8)}`;
}

export const NETWORK_BRIDGE_PATTERN = /^nxb-[0-9a-f]{8}$/;

/** The nftables table (family inet) holding a network's rules on a host: isolation, egress, NAT. */
export function networkTableNameOf(networkId: string): string {
  return `nexus_net_${hexOf(networkId).slice(0, 8)}`;
}

export const NETWORK_TABLE_PATTERN = /^nexus_net_[0-9a-f]{8}$/;

function hexOf(vmId: string): string {
  return vmId.toLowerCase().replace(/[^0-9a-f]/g, '');
}
