import { formatIpv4Block, parseIpv4, parseIpv4Block } from '../../kit/ipv4.js';

/** An IPv4 interface address with its prefix: `172.31.0.1/24`. */
export interface Ipv4Cidr {
  address: string;
  prefixLength: number;
}

/** An interface address with a prefix of /8 to /30 (host bits are its own: it is an address, not a block). */
export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const block = parseIpv4Block(text);
  const address = text.split('/')[0] ?? '';
  if (!block || parseIpv4(address) === undefined || block.prefixLength < 8 || block.prefixLength > 30) return undefined;
  return { address, prefixLength: block.prefixLength };
}

/** `172.31.0.1/24` -> `172.31.0.0/24`. */
export function networkOf(cidr: Ipv4Cidr): string {
  const block = parseIpv4Block(`${cidr.address}/${cidr.prefixLength}`);
  if (!block) throw new Error(`${cidr.address}/${cidr.prefixLength} is not an IPv4 address with a prefix`);
  return formatIpv4Block(block);
}
