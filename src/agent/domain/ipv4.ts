/** An IPv4 interface address with its prefix: `172.31.0.1/24`. */
export interface Ipv4Cidr {
  address: string;
  prefixLength: number;
}

export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text);
  if (!match) return undefined;
  const octets = match.slice(1, 5).map(Number);
  const prefixLength = Number(match[5]);
  if (octets.some((octet) => octet > 255) || prefixLength < 8 || prefixLength > 30) return undefined;
  return { address: octets.join('.'), prefixLength };
}

/** `172.31.0.1/24` -> `172.31.0.0/24`. */
export function networkOf(cidr: Ipv4Cidr): string {
  const value = toNumber(cidr.address);
  const mask = cidr.prefixLength === 0 ? 0 : (0xffffffff << (32 - cidr.prefixLength)) >>> 0;
  return `${fromNumber((value & mask) >>> 0)}/${cidr.prefixLength}`;
}

function toNumber(address: string): number {
  return address.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0);
}

function fromNumber(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join('.');
}
