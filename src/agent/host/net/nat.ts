import { writeFile } from 'node:fs/promises';
import { hostCommand } from './ip-command.js';
import { which } from '../host-requirements.js';

export type NatBackend = 'nftables' | 'iptables';

/**
 * Picks how to masquerade guest traffic: nftables when `nft` is present (Debian's default since
 * 10; its iptables is a front end to it anyway), iptables otherwise.
 */
export async function detectNatBackend(): Promise<NatBackend | undefined> {
  if (await which('nft')) return 'nftables';
  if (await which('iptables')) return 'iptables';
  return undefined;
}

/** The nftables table Nexus owns: everything it adds lives here, so removal is one command. */
function nftTable(bridge: string): string {
  return `nexus_${bridge.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}

/**
 * Masquerades traffic from the bridge's subnet leaving through any other interface. Idempotent:
 * nftables gets a table of our own (recreated whole), iptables a rule tagged with a comment that
 * is checked before it is added.
 */
export async function ensureMasquerade(backend: NatBackend, bridge: string, subnet: string): Promise<void> {
  if (backend === 'nftables') {
    const table = nftTable(bridge);
    await hostCommand('nft', ['delete', 'table', 'ip', table], 'removing the old NAT table').catch(() => undefined);
    await hostCommand('nft', ['add', 'table', 'ip', table], `adding nftables table ${table}`);
    await hostCommand('nft', ['add', 'chain', 'ip', table, 'postrouting', '{ type nat hook postrouting priority srcnat ; }'], 'adding the NAT chain');
    await hostCommand('nft', ['add', 'rule', 'ip', table, 'postrouting', 'ip', 'saddr', subnet, 'oifname', '!=', bridge, 'masquerade'], 'adding the masquerade rule');
    return;
  }
  const rule = ['-s', subnet, '!', '-o', bridge, '-j', 'MASQUERADE', '-m', 'comment', '--comment', `nexus:${bridge}`];
  const present = await hostCommand('iptables', ['-t', 'nat', '-C', 'POSTROUTING', ...rule], 'checking the NAT rule').then(
    () => true,
    () => false,
  );
  if (!present) await hostCommand('iptables', ['-t', 'nat', '-A', 'POSTROUTING', ...rule], 'adding the NAT rule');
}

export async function removeMasquerade(backend: NatBackend, bridge: string, subnet: string): Promise<void> {
  if (backend === 'nftables') {
    await hostCommand('nft', ['delete', 'table', 'ip', nftTable(bridge)], 'removing the NAT table').catch(() => undefined);
    return;
  }
  const rule = ['-s', subnet, '!', '-o', bridge, '-j', 'MASQUERADE', '-m', 'comment', '--comment', `nexus:${bridge}`];
  // -D removes one copy; repeat in case an older agent added it twice.
  for (;;) {
    const removed = await hostCommand('iptables', ['-t', 'nat', '-D', 'POSTROUTING', ...rule], 'removing the NAT rule').then(
      () => true,
      () => false,
    );
    if (!removed) return;
  }
}

/** Routing between the bridge and the uplink needs forwarding on. */
export async function enableIpForwarding(): Promise<void> {
  await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
}
