import type { Logger } from 'pino';
import { NETWORK_BRIDGE_PATTERN, NETWORK_TABLE_PATTERN, networkBridgeNameOf, networkTableNameOf } from '../../../contracts/host-names.js';
import type { NicNetwork } from '../../../contracts/machine-spec.js';
import { formatIpv4, parseIpv4Block } from '../../../kit/ipv4.js';
import { KeyedMutex } from '../../../kit/keyed-mutex.js';
import { runHostTool } from '../../../kit/host-tool.js';
import { NexusError } from '../../../kit/nexus-error.js';
import { networkRuleset } from '../../domain/network-ruleset.js';
import type { NetworkNic } from '../../ports/host-network.js';
import type { DhcpServers } from './dhcp-servers.js';
import { type LinkInfo, ip, listLinks, readLink } from './ip-command.js';
import { FORWARDING_TURNED_ON, enableIpForwarding, restoreForwarding } from './nat.js';

/** The alias of a network bridge: says it is Nexus's, and whose (the full network id, which its name only abbreviates). */
const NETWORK_MARK = 'nexus network ';

/**
 * The bridges of the networks a host's VMs are on: one per network, `nxb-<id>`, addressed with the
 * network's gateway, with the network's nftables table (isolation, egress, NAT). A bridge is made
 * with the first NIC on it and removed, rules and all, with the last. Work on one network's bridge
 * runs one at a time, so a NIC coming never meets its bridge going.
 */
export class NetworkBridges {
  private readonly locks = new KeyedMutex();

  constructor(
    private readonly log: Logger,
    /** Each network's DHCP server on this host; none when undefined. */
    private readonly dhcp?: DhcpServers,
  ) {}

  /** Gives the NIC its static lease on the network's DHCP server (started with the first). Call holding the bridge. */
  async addLease(nic: NetworkNic, bridge: string, tap: string): Promise<void> {
    await this.dhcp?.addLease(nic.network, bridge, tap, { mac: nic.mac, ip: nic.ip });
  }

  /** Drops the lease of the NIC whose TAP this is. Call holding the bridge. */
  async removeLease(bridge: string, tap: string): Promise<void> {
    if (!this.dhcp) return;
    const device = await readLink(bridge);
    const networkId = device && networkIdOf(device);
    if (networkId) await this.dhcp.removeLease(networkId, tap);
  }

  /** Runs `work` while nothing else changes the network's bridge. */
  holding<T>(bridge: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(bridge, work);
  }

  /**
   * Makes the network's bridge (or corrects it: address, up) and writes its rules whole, so a
   * changed egress takes effect. Call holding the bridge. Answers the bridge's name.
   */
  async ensure(network: NicNetwork): Promise<string> {
    const bridge = networkBridgeNameOf(network.id);
    const block = parseIpv4Block(network.cidr);
    if (!block || block.hostBitsSet) throw new NexusError('bad_request', `network ${network.id}: '${network.cidr}' is not a network block`);
    const gateway = formatIpv4(block.base + 1);
    const existing = await readLink(bridge);
    if (existing) this.assertOurs(existing, network.id);
    else {
      await ip(['link', 'add', 'name', bridge, 'type', 'bridge'], `creating bridge ${bridge} for network ${network.id}`);
      const turnedOn = await enableIpForwarding().catch(async (error: unknown) => {
        await ip(['link', 'del', 'dev', bridge], `removing the half-made bridge ${bridge}`).catch(() => undefined);
        throw error;
      });
      await ip(['link', 'set', 'dev', bridge, 'alias', `${NETWORK_MARK}${network.id}${turnedOn ? FORWARDING_TURNED_ON : ''}`], `marking bridge ${bridge}`);
    }
    const addresses = (existing?.addr_info ?? []).filter((entry) => entry.family === 'inet');
    for (const stale of addresses.filter((entry) => entry.local !== gateway || entry.prefixlen !== block.prefixLength)) {
      await ip(['addr', 'del', `${stale.local}/${stale.prefixlen}`, 'dev', bridge], `removing a stale address from bridge ${bridge}`);
    }
    if (!addresses.some((entry) => entry.local === gateway && entry.prefixlen === block.prefixLength)) {
      await ip(['addr', 'add', `${gateway}/${block.prefixLength}`, 'dev', bridge], `addressing bridge ${bridge}`);
    }
    await ip(['link', 'set', 'dev', bridge, 'up'], `bringing bridge ${bridge} up`);
    await nft(
      networkRuleset({ table: networkTableNameOf(network.id), bridge, cidr: network.cidr, gateway, egress: network.egress }),
      `writing the rules of network ${network.id}`,
    );
    if (!existing) this.log.info({ bridge, network: network.id, cidr: network.cidr, egress: network.egress }, 'network bridge made');
    return bridge;
  }

  /**
   * Removes the network bridge and its rules when nothing is attached to it any more; a device of
   * that name that is not a bridge Nexus made for a network is never touched. Call holding the bridge.
   */
  async releaseIfUnused(bridge: string): Promise<void> {
    const links = await listLinks();
    const device = links.find((link) => link.ifname === bridge);
    if (!device || !isNetworkBridge(device) || links.some((link) => link.master === bridge)) return;
    await this.remove(device);
  }

  /** The network bridges with nothing attached, and network tables whose bridge is gone: what {@link sweep} removes. */
  async unused(): Promise<string[]> {
    const links = await listLinks();
    const bridges = links.filter((link) => isNetworkBridge(link) && !links.some((other) => other.master === link.ifname));
    const tables = (await networkTables()).filter((table) => !links.some((link) => isNetworkBridge(link) && tableOf(link) === table));
    const bridged = new Set(links.filter(isNetworkBridge).map(networkIdOf));
    const servers = ((await this.dhcp?.networkIds()) ?? []).filter((id) => !bridged.has(id));
    return [
      ...bridges.map((link) => `bridge ${link.ifname}`),
      ...tables.map((table) => `nftables table ${table}`),
      ...servers.map((id) => `DHCP server of network ${id}`),
    ];
  }

  /** Removes every unused network bridge (with its table) and every network table without a bridge: what a crash between two steps left. */
  async sweep(): Promise<void> {
    const links = await listLinks();
    for (const link of links.filter(isNetworkBridge)) {
      await this.holding(link.ifname, () => this.releaseIfUnused(link.ifname));
    }
    const bridges = (await listLinks()).filter(isNetworkBridge);
    const bridged = new Set(bridges.map(tableOf));
    for (const table of await networkTables()) {
      if (!bridged.has(table)) await nft(`delete table inet ${table}\n`, `removing the rules of a network gone from this host (${table})`);
    }
    const served = new Set(bridges.map(networkIdOf));
    for (const id of (await this.dhcp?.networkIds()) ?? []) if (!served.has(id)) await this.dhcp?.stop(id);
  }

  private async remove(device: LinkInfo): Promise<void> {
    const table = tableOf(device);
    if (table) await nft(`table inet ${table} {}\ndelete table inet ${table}\n`, `removing the rules of bridge ${device.ifname}`);
    await ip(['link', 'del', 'dev', device.ifname], `deleting bridge ${device.ifname}`);
    if (device.ifalias?.endsWith(FORWARDING_TURNED_ON)) await restoreForwarding();
    const networkId = networkIdOf(device);
    if (networkId) await this.dhcp?.stop(networkId);
    this.log.info({ bridge: device.ifname }, 'network bridge removed: no NIC left on it');
  }

  /** A device with a network bridge's name must be the bridge Nexus made for this very network. */
  private assertOurs(device: LinkInfo, networkId: string): void {
    const kind = device.linkinfo?.info_kind;
    const owner = networkIdOf(device);
    if (kind === 'bridge' && owner === networkId) return;
    throw new NexusError(
      'conflict',
      owner && kind === 'bridge'
        ? `bridge ${device.ifname} belongs to network ${owner}, not ${networkId}: their ids share their first 8 hex digits`
        : `a ${kind ?? 'network'} device named ${device.ifname} already exists and was not made by Nexus for network ${networkId}`,
      { suggestion: owner ? 'Recreate one of the two networks (a new id), or keep their VMs on different hosts.' : `Remove or rename ${device.ifname}.` },
    );
  }
}

function isNetworkBridge(link: LinkInfo): boolean {
  return NETWORK_BRIDGE_PATTERN.test(link.ifname) && link.linkinfo?.info_kind === 'bridge' && link.ifalias?.startsWith(NETWORK_MARK) === true;
}

/** The network a Nexus network bridge is for, from its mark. */
function networkIdOf(link: LinkInfo): string | undefined {
  return link.ifalias?.startsWith(NETWORK_MARK) ? link.ifalias.slice(NETWORK_MARK.length).split(',')[0] : undefined;
}

/** The table of a network bridge, from the network id its mark names. */
function tableOf(link: LinkInfo): string | undefined {
  const id = networkIdOf(link);
  return id ? networkTableNameOf(id) : undefined;
}

async function networkTables(): Promise<string[]> {
  const { stdout } = await runHostTool('nft', ['-j', 'list', 'tables', 'inet'], { doing: 'listing nftables tables' });
  const entries = (JSON.parse(stdout) as { nftables?: Array<{ table?: { name: string } }> }).nftables ?? [];
  return entries.flatMap((entry) => (entry.table && NETWORK_TABLE_PATTERN.test(entry.table.name) ? [entry.table.name] : []));
}

async function nft(script: string, doing: string): Promise<void> {
  await runHostTool('nft', ['-f', '-'], { input: script, doing });
}
