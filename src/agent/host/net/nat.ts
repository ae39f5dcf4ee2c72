import { readFile, writeFile } from 'node:fs/promises';
import { runHostTool } from '../../../kit/host-tool.js';
import { which } from '../host-requirements.js';
import { listLinks } from './ip-command.js';

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
    await runHostTool('nft', ['delete', 'table', 'ip', table], { doing: 'removing the old NAT table' }).catch(() => undefined);
    await runHostTool('nft', ['add', 'table', 'ip', table], { doing: `adding nftables table ${table}` });
    await runHostTool('nft', ['add', 'chain', 'ip', table, 'postrouting', '{ type nat hook postrouting priority srcnat ; }'], {
      doing: 'adding the NAT chain',
    });
    await runHostTool('nft', ['add', 'rule', 'ip', table, 'postrouting', 'ip', 'saddr', subnet, 'oifname', '!=', bridge, 'masquerade'], {
      doing: 'adding the masquerade rule',
    });
    return;
  }
  const rule = iptablesRule(bridge, subnet);
  const present = await runHostTool('iptables', ['-t', 'nat', '-C', 'POSTROUTING', ...rule], { doing: 'checking the NAT rule' }).then(
    () => true,
    () => false,
  );
  if (!present) await runHostTool('iptables', ['-t', 'nat', '-A', 'POSTROUTING', ...rule], { doing: 'adding the NAT rule' });
}

export async function removeMasquerade(backend: NatBackend, bridge: string, subnet: string): Promise<void> {
  if (backend === 'nftables') {
    await runHostTool('nft', ['delete', 'table', 'ip', nftTable(bridge)], { doing: 'removing the NAT table' }).catch(() => undefined);
    return;
  }
  const rule = iptablesRule(bridge, subnet);
  // -D removes one copy; repeat in case an older agent added it twice.
  for (;;) {
    const removed = await runHostTool('iptables', ['-t', 'nat', '-D', 'POSTROUTING', ...rule], { doing: 'removing the NAT rule' }).then(
      () => true,
      () => false,
    );
    if (!removed) return;
  }
}

/** Whether the bridge's masquerade is there: the nftables table, or the tagged iptables rule. */
export async function hasMasquerade(backend: NatBackend, bridge: string, subnet: string): Promise<boolean> {
  const [tool, args] =
    backend === 'nftables'
      ? (['nft', ['list', 'table', 'ip', nftTable(bridge)]] as const)
      : (['iptables', ['-t', 'nat', '-C', 'POSTROUTING', ...iptablesRule(bridge, subnet)]] as const);
  return runHostTool(tool, [...args], { doing: 'looking for the NAT' }).then(
    () => true,
    () => false,
  );
}

/** How the bridge's masquerade is named where it lives, for messages: the nftables table, or the iptables rule's tag. */
export function masqueradeName(backend: NatBackend, bridge: string): string {
  return backend === 'nftables' ? `nftables table ${nftTable(bridge)}` : `iptables rule nexus:${bridge}`;
}

/** The one masquerade rule Nexus adds with iptables, tagged so it can be found again. */
function iptablesRule(bridge: string, subnet: string): string[] {
  return ['-s', subnet, '!', '-o', bridge, '-j', 'MASQUERADE', '-m', 'comment', '--comment', `nexus:${bridge}`];
}

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

/** Routing between the bridge and the uplink needs forwarding on. Answers whether it was off (so this turned it on). */
export async function enableIpForwarding(): Promise<boolean> {
  const wasOff = (await readFile(IP_FORWARD, 'utf8')).trim() === '0';
  if (wasOff) await writeFile(IP_FORWARD, '1\n');
  return wasOff;
}

/** Turns forwarding back off: for a tear-down that removes the NAT of a bridge whose set-up turned it on. */
export async function disableIpForwarding(): Promise<void> {
  await writeFile(IP_FORWARD, '0\n');
}

/**
 * The end of the alias of a Nexus bridge whose set-up found IP forwarding off and turned it on:
 * the tear-down that removes the last such bridge turns it off again.
 */
export const FORWARDING_TURNED_ON = ', ip_forward turned on';

/** Turns IP forwarding back off once no Nexus bridge that turned it on is left (call after removing one). */
export async function restoreForwarding(): Promise<void> {
  const others = (await listLinks()).filter((link) => link.ifalias?.startsWith('nexus ') === true && link.ifalias.endsWith(FORWARDING_TURNED_ON));
  if (others.length === 0) await disableIpForwarding();
}
