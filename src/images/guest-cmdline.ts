import { DEFAULT_BOOT_ARGS } from '../contracts/vm-api.js';
import { guestNetworkArgs } from '../contracts/guest-network-args.js';
import { parseIpv4, parseIpv4Block } from '../kit/ipv4.js';
import { NexusError } from '../kit/nexus-error.js';

/**
 * The kernel command line every guest of these images boots with. `reboot=t panic=1` turn a
 * panic or reboot into a triple fault, which QEMU's -no-reboot (and Firecracker) treat as exit.
 */
export const GUEST_BOOT_ARGS = DEFAULT_BOOT_ARGS;

export interface GuestCmdlineOptions {
  /** The image's `boot_args`; default {@link GUEST_BOOT_ARGS}. */
  bootArgs?: string;
  /**
   * The host's TSC rate (`hostTscKhz()`). Under TCG the guest's PIT calibration fails often
   * enough to hang boots; passing the rate avoids it. Omit when unknown.
   */
  tscKhz?: number;
  /** eth0's address with its prefix length, e.g. 10.0.0.2/24. */
  ipCidr?: string;
  /** The default route's gateway; needs `ipCidr`. */
  gatewayIp?: string;
  hostname?: string;
  /** DNS servers for /etc/resolv.conf. */
  dns?: string[];
}

/** The full kernel command line for one VM: boot args, TSC rate, then the `nexus.*` parameters init reads. */
export function guestKernelCmdline(options: GuestCmdlineOptions = {}): string {
  const args = [options.bootArgs ?? GUEST_BOOT_ARGS];
  if (options.tscKhz !== undefined) {
    if (!Number.isInteger(options.tscKhz) || options.tscKhz <= 0) throw badRequest(`tscKhz must be a positive whole number (got ${options.tscKhz})`);
    args.push(`tsc_early_khz=${options.tscKhz}`, 'tsc=reliable');
  }
  if (options.ipCidr !== undefined && !isIpv4Cidr(options.ipCidr)) {
    throw badRequest(`the guest address must be IPv4 with a prefix length, like 10.0.0.2/24 (got '${options.ipCidr}')`);
  }
  if (options.gatewayIp !== undefined) {
    if (options.ipCidr === undefined) throw badRequest('a gateway needs a guest address (ipCidr) too');
    if (!isIpv4(options.gatewayIp)) throw badRequest(`the gateway must be an IPv4 address (got '${options.gatewayIp}')`);
  }
  if (options.hostname !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(options.hostname)) {
    throw badRequest(`the guest hostname must be one DNS label: letters, digits and inner hyphens, at most 63 (got '${options.hostname}')`);
  }
  args.push(...guestNetworkArgs(options));
  return args.join(' ');
}

/** True for a dotted-quad IPv4 address without leading zeros. */
export function isIpv4(text: string): boolean {
  return parseIpv4(text) !== undefined;
}

/** True for `<IPv4>/<0..32>`. */
export function isIpv4Cidr(text: string): boolean {
  return parseIpv4Block(text) !== undefined;
}

function badRequest(message: string): NexusError {
  return new NexusError('bad_request', message, { suggestion: 'Fix the VM network or host settings and try again.' });
}
