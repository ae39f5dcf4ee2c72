import { NexusError } from '../../kit/nexus-error.js';
import { type Ipv4Block, blockContains, blockSize, blocksOverlap, formatIpv4, formatIpv4Block, parseIpv4, parseIpv4Block } from '../../kit/ipv4.js';

/** The largest network Nexus manages (65,534 addresses): IPAM reads a network's used addresses whole. */
export const LARGEST_PREFIX = 16;
/** The smallest network that holds a VM: a /30 has two usable addresses, the gateway and one guest. */
export const SMALLEST_PREFIX = 30;

/** A network's block as the rules see it: where its addresses come from. */
export interface NetworkBlock extends Ipv4Block {
  /** The first usable address: the guests' default route. */
  gateway: number;
}

/**
 * A network block as a user wrote it, checked: a dotted quad with a prefix from /16 to /30 and no
 * host bits set. Throws `validation_failed` naming what to write instead.
 */
export function checkNetworkCidr(text: string): NetworkBlock {
  const block = parseIpv4Block(text);
  if (!block) throw new NexusError('validation_failed', `cidr '${text}' is not an IPv4 block like 10.220.8.0/24`);
  if (block.hostBitsSet) {
    throw new NexusError('validation_failed', `cidr '${text}' has host bits set`, {
      suggestion: `Write the block's first address: ${formatIpv4Block(block)}.`,
    });
  }
  if (block.prefixLength < LARGEST_PREFIX) {
    throw new NexusError('validation_failed', `cidr '${text}' is too large to manage: at most /${LARGEST_PREFIX} (65,534 addresses)`, {
      suggestion: `Split it into blocks of /${LARGEST_PREFIX} or smaller.`,
    });
  }
  if (block.prefixLength > SMALLEST_PREFIX) {
    throw new NexusError(
      'validation_failed',
      `cidr '${text}' is too small to hold a VM: a network needs a gateway and a guest address, /${SMALLEST_PREFIX} at least`,
      {
        suggestion: `Give it /${SMALLEST_PREFIX} or a shorter prefix.`,
      },
    );
  }
  return { base: block.base, prefixLength: block.prefixLength, gateway: block.base + 1 };
}

/** A stored network's block (stored blocks passed {@link checkNetworkCidr}). */
export function networkBlockOf(cidr: string): NetworkBlock {
  const block = parseIpv4Block(cidr);
  if (!block || block.hostBitsSet) throw new Error(`stored network block '${cidr}' is not a block`);
  return { base: block.base, prefixLength: block.prefixLength, gateway: block.base + 1 };
}

/** Where a NIC is on its network, as guests and the API see it: its prefix length and gateway beside its address. */
export function placeOnNetwork(nic: { ip: string; cidr: string }): { ip: string; prefixLength: number; gateway: string } {
  const block = networkBlockOf(nic.cidr);
  return { ip: nic.ip, prefixLength: block.prefixLength, gateway: formatIpv4(block.gateway) };
}

/** The first of `others` that overlaps `block`, if any. */
export function overlapping<T extends { cidr: string }>(block: Ipv4Block, others: readonly T[]): T | undefined {
  return others.find((other) => blocksOverlap(block, networkBlockOf(other.cidr)));
}

/**
 * The next free block of `prefixLength` in `pool` that overlaps none of `taken`: where a project's
 * default network goes. Undefined when the pool is full.
 */
export function freeBlockIn(pool: Ipv4Block, prefixLength: number, taken: readonly Ipv4Block[]): Ipv4Block | undefined {
  const step = 2 ** (32 - prefixLength);
  for (let base = pool.base; base < pool.base + blockSize(pool); base += step) {
    const candidate = { base, prefixLength };
    if (!taken.some((other) => blocksOverlap(candidate, other))) return candidate;
  }
  return undefined;
}

/** Who holds an address in a network: the VM's name, for a 409 that says so. */
export type UsedAddresses = ReadonlyMap<string, string>;

/**
 * The address a NIC gets in `network`: `requested` if it is a guest address of the block and free,
 * else the lowest free one. Refuses a requested address outside the block, or its network,
 * gateway or broadcast address (`unprocessable`), one another VM holds (`conflict`, naming it), and
 * a full network (`conflict`).
 */
export function pickAddress(network: NetworkBlock & { name: string }, used: UsedAddresses, requested?: string): string {
  const first = network.base + 1;
  const last = network.base + blockSize(network) - 2;
  if (requested !== undefined) {
    const value = parseIpv4(requested);
    const where = `network ${network.name} (${formatIpv4Block(network)})`;
    if (value === undefined || !blockContains(network, value)) {
      throw new NexusError('unprocessable', `ip ${requested} is not in ${where}`, {
        suggestion: `Ask for an address from ${formatIpv4(first + 1)} to ${formatIpv4(last)}, or none.`,
      });
    }
    if (value === network.gateway || value < first || value > last) {
      const what = value === network.gateway ? 'the gateway' : value < first ? 'the network address' : 'the broadcast address';
      throw new NexusError('unprocessable', `ip ${requested} is ${what} of ${where}`, {
        suggestion: `Ask for an address from ${formatIpv4(first + 1)} to ${formatIpv4(last)}.`,
      });
    }
    const holder = used.get(requested);
    if (holder !== undefined) {
      throw new NexusError('conflict', `ip ${requested} in network ${network.name} is taken by VM ${holder}`, {
        suggestion: 'Ask for another address, or none to be given a free one.',
      });
    }
    return requested;
  }
  for (let value = first; value <= last; value++) {
    if (value === network.gateway) continue;
    const address = formatIpv4(value);
    if (!used.has(address)) return address;
  }
  throw new NexusError('conflict', `network ${network.name} (${formatIpv4Block(network)}) has no free address`, {
    suggestion: 'Delete VMs on it, or put the VM on another network.',
  });
}
