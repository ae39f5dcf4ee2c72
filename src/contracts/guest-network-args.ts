/**
 * The kernel parameters Nexus images' init reads to configure eth0 (the kernel's own `ip=` cannot
 * work when virtio_net is a module): `nexus.ip=<addr/prefix> nexus.gw=<ip> nexus.dns=<ip,ip>
 * nexus.hostname=<name>`. The manager fills them in from IPAM; any given in `boot_args` give way.
 */
export interface GuestNetwork {
  /** eth0's address with its prefix length, e.g. 10.220.0.2/24. */
  ipCidr?: string;
  gatewayIp?: string;
  dns?: readonly string[];
  hostname?: string;
}

const NETWORK_PARAMETER = /^nexus\.(ip|gw|dns|hostname)=/;

export function guestNetworkArgs(network: GuestNetwork): string[] {
  return [
    ...(network.ipCidr !== undefined ? [`nexus.ip=${network.ipCidr}`] : []),
    ...(network.gatewayIp !== undefined ? [`nexus.gw=${network.gatewayIp}`] : []),
    ...(network.dns && network.dns.length > 0 ? [`nexus.dns=${network.dns.join(',')}`] : []),
    ...(network.hostname !== undefined ? [`nexus.hostname=${network.hostname}`] : []),
  ];
}

/** `cmdline` with its own `nexus.ip/gw/dns/hostname` parameters replaced by `network`'s. */
export function withGuestNetwork(cmdline: string, network: GuestNetwork): string {
  const kept = cmdline.split(/\s+/).filter((arg) => arg !== '' && !NETWORK_PARAMETER.test(arg));
  return [...kept, ...guestNetworkArgs(network)].join(' ');
}
