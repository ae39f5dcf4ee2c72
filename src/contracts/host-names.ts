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

function hexOf(vmId: string): string {
  return vmId.toLowerCase().replace(/[^0-9a-f]/g, '');
}
