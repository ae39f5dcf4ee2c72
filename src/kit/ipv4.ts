import ipaddr from 'ipaddr.js';

/** An IPv4 block as a number and a prefix length: `10.20.0.0/24` is `{ base: 0x0a140000, prefixLength: 24 }`. */
export interface Ipv4Block {
  base: number;
  prefixLength: number;
}

/** A dotted quad (four decimal parts, no shorthand) as a 32-bit number; undefined for anything else. */
export function parseIpv4(text: string): number | undefined {
  if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
  return ipaddr.IPv4.parse(text).octets.reduce((value, octet) => value * 256 + octet, 0);
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join('.');
}

/**
 * `a.b.c.d/n` as written, with `hostBitsSet` telling whether the address had bits right of the
 * prefix (`10.0.0.1/24` is a block only once those are cleared: `10.0.0.0/24`). Undefined when it
 * is not a dotted quad with a prefix of 0 to 32.
 */
export function parseIpv4Block(text: string): (Ipv4Block & { hostBitsSet: boolean }) | undefined {
  const [address, prefix, ...rest] = text.split('/');
  if (rest.length > 0 || address === undefined || prefix === undefined || !/^(\d|[12]\d|3[0-2])$/.test(prefix)) return undefined;
  const value = parseIpv4(address);
  if (value === undefined) return undefined;
  const prefixLength = Number(prefix);
  const base = (value & maskOf(prefixLength)) >>> 0;
  return { base, prefixLength, hostBitsSet: base !== value };
}

export function formatIpv4Block(block: Ipv4Block): string {
  return `${formatIpv4(block.base)}/${block.prefixLength}`;
}

/** How many addresses the block spans, its network and broadcast addresses included. */
export function blockSize(block: Ipv4Block): number {
  return 2 ** (32 - block.prefixLength);
}

export function blockContains(block: Ipv4Block, address: number): boolean {
  return (address & maskOf(block.prefixLength)) >>> 0 === block.base;
}

/** True when the two blocks share any address (one holds the other, or they are the same). */
export function blocksOverlap(a: Ipv4Block, b: Ipv4Block): boolean {
  const shorter = Math.min(a.prefixLength, b.prefixLength);
  return (a.base & maskOf(shorter)) >>> 0 === (b.base & maskOf(shorter)) >>> 0;
}

/** The netmask of a prefix length as a number: 24 -> 0xffffff00. */
export function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}
