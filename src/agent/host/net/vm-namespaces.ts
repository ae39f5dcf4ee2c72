import { access, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { GUEST_TAP, VM_NETNS_PATTERN, macOf, netnsPathOf, networkKeyOf, vmNetnsNameOf } from '../../../contracts/host-names.js';
import type { NicNetwork } from '../../../contracts/machine-spec.js';
import { formatIpv4, parseIpv4Block } from '../../../kit/ipv4.js';
import { KeyedMutex } from '../../../kit/keyed-mutex.js';
import { runHostTool } from '../../../kit/host-tool.js';
import { NexusError } from '../../../kit/nexus-error.js';
import type { NetworkNic } from '../../ports/host-network.js';
import { DhcpServers } from './dhcp-servers.js';
import { type Firewall, firewallOf, inNetns } from './firewall.js';
import { type LinkInfo, ip, listLinks, readLink } from './ip-command.js';
import { FORWARDING_TURNED_ON, type NatBackend, detectNatBackend, enableIpForwarding, restoreForwarding } from './nat.js';
import { portsInUse } from './host-ports.js';

/** The veth's end inside every VM namespace. */
const NETNS_VETH = 'veth0';
/**
 * The next hop a VM namespace routes everything to: the host end of its veth, by a neighbour entry
 * written in (no ARP on the veth, and the host end needs no address of its own).
 */
const HOST_HOP = '169.254.0.1';
/** The MAC of every VM namespace's `tap0` (locally administered, unicast): the guest's gateway, and every neighbour answered by proxy ARP. */
const GUEST_TAP_MAC = '02:00:00:00:00:01';
/** The key under which IP forwarding and its mark change (network ids are the other keys). */
const FORWARDING_LOCK = 'ip_forward';
/** The alias of the host end of a VM's veth: says it is Nexus's, and whose: `nexus vm <vm id> on network <network id>`. */
const VETH_MARK = /^nexus vm (\S+) on network ([0-9a-f-]{36})(,.*)?$/;

/**
 * Each VM on a network lives in a network namespace of its own, `nxv-<vm id>`:
 *
 *     guest eth0 (A) ── tap0 [gateway/32] ─ namespace ─ veth0 ══ nxv-<id> ── host routing ── other VMs, outside
 *
 * Inside it the TAP always has one name (`tap0`) and the guest's gateway as its address, so a
 * guest restored from a snapshot finds the network it was frozen with; proxy ARP on `tap0` answers
 * for every other address, so the guest's neighbours are reached by routing. The host routes the
 * VM's fleet address to its veth. When the guest's address is not its fleet address (a clone), the
 * namespace translates between them. The namespace also holds the VM's DHCP server and its own
 * rules (no spoofing). A network's rules on the host (a {@link Firewall}'s) list the network's
 * veths here; they are written with each VM that comes or goes and removed with the last.
 *
 * Namespaces, veths and rules are host-wide, but a VM's are this agent's only if it keeps a record
 * of them (`<dir>/vms/<namespace>/`, made before the namespace and removed after it): what it lists,
 * and so what its manager may collect as an orphan, is that, never another agent's on this host.
 */
export class VmNamespaces {
  private readonly locks = new KeyedMutex();
  private readonly dhcp: DhcpServers;
  private readonly records: string;
  private chosen: Firewall | undefined;

  constructor(
    private readonly log: Logger,
    /** The agent's folder for its VMs' networking (`<run-dir>/net`): their records and DHCP servers' files. */
    dir: string,
    /** Where rules are kept; default: nftables when `nft` is installed, else iptables. */
    private readonly backend?: NatBackend,
  ) {
    this.dhcp = new DhcpServers(join(dir, 'dhcp'), log);
    this.records = join(dir, 'vms');
  }

  /**
   * Makes the VM's namespace, its veth and TAP (owned by `owner` when given), its routes and rules,
   * its DHCP server, and enters it in its network's rules: anything of a previous one is removed
   * first. On failure, what it made goes again.
   */
  async ensure(vmId: string, nic: NetworkNic, owner?: { uid: number; gid: number }): Promise<void> {
    const netns = vmNetnsNameOf(vmId);
    const { network } = nic;
    const block = parseIpv4Block(network.cidr);
    if (!block || block.hostBitsSet) throw new NexusError('bad_request', `network ${network.id}: '${network.cidr}' is not a network block`);
    const gateway = formatIpv4(block.base + 1);
    const guestIp = nic.guestIp ?? nic.ip;
    const busy = await portsInUse(nic.ports ?? []);
    if (busy.length > 0) {
      throw new NexusError('conflict', `host port ${busy.join(', ')} is in use on this host: a process of the host listens on it`, {
        suggestion: 'Publish another host port; a published port would take that process’s traffic.',
      });
    }
    const existing = await readLink(netns);
    const holder = existing && markOf(existing)?.vmId;
    if (holder && holder !== vmId) {
      throw new NexusError('conflict', `VM ${holder} on this host already has the namespace ${netns}: their ids share their first 8 hex digits`, {
        suggestion: 'Create the VM with another id.',
      });
    }
    await this.remove(netns);
    const firewall = await this.firewall();
    await mkdir(join(this.records, netns), { recursive: true, mode: 0o700 });
    const hostMac = vethMac(vmId, '0a');
    const netnsMac = vethMac(vmId, '0e');
    try {
      // Forwarding and its mark change under one lock, so a VM coming never meets the last one going.
      await this.locks.run(FORWARDING_LOCK, async () => {
        // The mark of the VM whose plumbing found forwarding off: the last VM's removal turns it off again.
        const turnedOn = (await enableIpForwarding()) ? FORWARDING_TURNED_ON : '';
        await ipBatch(
          [
            `netns add ${netns}`,
            `link add ${netns} address ${hostMac} type veth peer name ${NETNS_VETH} address ${netnsMac} netns ${netns}`,
            `link set dev ${netns} alias "nexus vm ${vmId} on network ${network.id}${turnedOn}"`,
            `link set dev ${netns} up`,
          ],
          [],
          `making the network namespace ${netns} of VM ${vmId}`,
        );
      });
      const ownerArgs = owner ? ` user ${owner.uid} group ${owner.gid}` : '';
      await ipBatch(
        [
          'link set dev lo up',
          `tuntap add dev ${GUEST_TAP} mode tap${ownerArgs}`,
          // One MAC for every tap0: a guest restored from a snapshot still knows its gateway's.
          `link set dev ${GUEST_TAP} address ${GUEST_TAP_MAC}`,
          `addr add ${gateway}/32 dev ${GUEST_TAP}`,
          `link set dev ${GUEST_TAP} up`,
          `link set dev ${NETNS_VETH} up`,
          `route add ${guestIp}/32 dev ${GUEST_TAP}`,
          `neigh replace ${HOST_HOP} lladdr ${hostMac} dev ${NETNS_VETH} nud permanent`,
          `route add ${HOST_HOP}/32 dev ${NETNS_VETH} scope link`,
          `route add default via ${HOST_HOP} dev ${NETNS_VETH}`,
        ],
        ['-n', netns],
        `plumbing the network namespace ${netns}`,
      );
      await inNetns(netns, 'sh', ['-c', namespaceSysctls()], { doing: `turning on forwarding and proxy ARP in ${netns}` });
      await firewall.writeVmNetns(netns, { tap: GUEST_TAP, veth: NETNS_VETH, guestIp, ip: nic.ip });
      await this.dhcp.start(netns, GUEST_TAP, network, { mac: nic.mac, ip: guestIp });
      await ipBatch(
        [`neigh replace ${nic.ip} lladdr ${netnsMac} dev ${netns} nud permanent`, `route replace ${nic.ip}/32 dev ${netns}`],
        [],
        `routing ${nic.ip} to ${netns}`,
      );
      if (nic.ports?.length) {
        // Clients on the host's loopback reach the VM too: their packets may leave through the veth.
        await writeFile(`/proc/sys/net/ipv4/conf/${netns}/route_localnet`, '1\n');
        await firewall.publish(keyOf(netns), { veth: netns, ip: nic.ip, ports: nic.ports });
      }
      await this.locks.run(network.id, () => this.writeNetworkRules(firewall, network));
    } catch (error) {
      await this.remove(netns).catch((undoError: unknown) => this.log.error({ err: undoError }, `could not remove the half-made namespace ${netns}`));
      throw error;
    }
  }

  /**
   * Removes a VM's namespace by its name, with its veth (and so its route), DHCP server, TAP,
   * published ports and record, and takes it out of its network's rules (which go with the
   * network's last VM here). Nothing there is fine; a device of that name that is not a veth Nexus
   * made is refused and left alone.
   */
  async remove(netns: string): Promise<void> {
    assertNetnsName(netns);
    const device = await readLink(netns);
    if (device) assertOurs(device);
    const networkId = device && markOf(device)?.networkId;
    await this.dhcp.stop(netns);
    const firewall = await this.firewallIfAny();
    await firewall?.unpublish(keyOf(netns));
    if (device) {
      await this.locks.run(FORWARDING_LOCK, async () => {
        await ip(['link', 'del', 'dev', netns], `deleting the veth ${netns}`);
        if (device.ifalias?.endsWith(FORWARDING_TURNED_ON)) await handOnForwardingMark();
      });
    }
    if (await netnsExists(netns)) await ip(['netns', 'del', netns], `deleting the network namespace ${netns}`);
    if (networkId && firewall) await this.locks.run(networkId, () => this.dropFromNetworkRules(firewall, networkId, netns));
    await rm(join(this.records, netns), { recursive: true, force: true });
  }

  /**
   * This agent's VMs that have anything on the host, by their namespace's name: those it keeps a
   * record of (whatever of theirs is left: a namespace, a veth named like it, published ports), and
   * those with a DHCP server's files. {@link remove} removes all of it, so a leftover of any of these
   * kinds is listed, and removed, as one.
   */
  async list(): Promise<string[]> {
    const names = new Set([...(await readdir(this.records).catch(() => [])), ...(await this.dhcp.names())]);
    return [...names].filter((name) => VM_NETNS_PATTERN.test(name)).sort();
  }

  /** Whether the VM's namespace is there with its veth to the host (deleting either end of a veth deletes both). */
  async isConnected(netns: string): Promise<boolean> {
    const device = await readLink(netns);
    return device !== undefined && isVmVeth(device) && (await netnsExists(netns));
  }

  /** Network rules with no VM of theirs on the host, ports of VMs gone, and DHCP servers whose namespace is gone: what {@link sweep} removes. */
  async unused(): Promise<string[]> {
    const { firewall, networks, ports, servers } = await this.unusedParts();
    return [
      ...networks.map((key) => firewall?.nameOf('network', key) ?? key),
      ...ports.map((key) => firewall?.nameOf('ports', key) ?? key),
      ...servers.map((netns) => `DHCP server of ${netns}`),
    ];
  }

  /** Removes network rules with no VM of theirs here, ports of VMs gone, and DHCP servers without a namespace: what a crash between two steps left. */
  async sweep(): Promise<void> {
    const { firewall, networks, ports, servers } = await this.unusedParts();
    for (const key of networks) await firewall?.removeNetwork(key);
    for (const key of ports) await firewall?.unpublish(key);
    for (const netns of servers) await this.dhcp.stop(netns);
  }

  private async unusedParts(): Promise<{ firewall?: Firewall; networks: string[]; ports: string[]; servers: string[] }> {
    const present = new Set(await namespaces());
    const servers = (await this.dhcp.names()).filter((netns) => !present.has(netns));
    const firewall = await this.firewallIfAny();
    if (!firewall) return { networks: [], ports: [], servers };
    const veths = (await listLinks()).filter(isVmVeth);
    const used = new Set(veths.map((link) => networkKeyOf(markOf(link)?.networkId ?? '')));
    const vms = new Set(veths.map((link) => keyOf(link.ifname)));
    return {
      firewall,
      networks: (await firewall.networks()).filter((key) => !used.has(key)),
      ports: (await firewall.published()).filter((key) => !vms.has(key)),
      servers,
    };
  }

  /** Writes the network's rules whole for the network's veths on this host. Call holding the network. */
  private async writeNetworkRules(firewall: Firewall, network: NicNetwork): Promise<void> {
    const vms = (await listLinks()).filter((link) => isVmVeth(link) && markOf(link)?.networkId === network.id).map((link) => link.ifname);
    await firewall.writeNetwork(networkKeyOf(network.id), { cidr: network.cidr, egress: network.egress, vms });
    // Its own veth is the only one of the network here: the rules were just made.
    if (vms.length === 1)
      this.log.info({ network: network.id, cidr: network.cidr, egress: network.egress }, 'network rules written: its first VM on this host');
  }

  /** Takes a veth out of its network's rules; removes them once the network has no VM left here. Call holding the network. */
  private async dropFromNetworkRules(firewall: Firewall, networkId: string, veth: string): Promise<void> {
    // Both removals are fine with nothing to remove: no need to look first.
    const key = networkKeyOf(networkId);
    const others = (await listLinks()).some((link) => isVmVeth(link) && link.ifname !== veth && markOf(link)?.networkId === networkId);
    if (others) {
      await firewall.dropFromNetwork(key, veth);
      return;
    }
    await firewall.removeNetwork(key);
    this.log.info({ network: networkId }, 'network rules removed: no VM of it left on this host');
  }

  /** The host's firewall, for writing rules: refused when neither nftables nor iptables is installed. */
  private async firewall(): Promise<Firewall> {
    const firewall = await this.firewallIfAny();
    if (firewall) return firewall;
    throw new NexusError('unavailable', 'neither nft nor iptables is installed: VMs on networks need one for their rules', {
      suggestion: 'As root: apt-get install -y nftables',
    });
  }

  /** The host's firewall, or none when neither tool is installed (then no rules of ours can be there; looked for again next time). */
  private async firewallIfAny(): Promise<Firewall | undefined> {
    if (this.chosen) return this.chosen;
    const backend = this.backend ?? (await detectNatBackend());
    this.chosen = backend && firewallOf(backend);
    return this.chosen;
  }
}

/** The key of a VM's rules (its published ports), from its namespace's name: the VM id's first 8 hex digits. */
function keyOf(netns: string): string {
  return netns.slice('nxv-'.length);
}

/**
 * A VM whose plumbing turned IP forwarding on is gone: another VM's veth carries the mark on, or,
 * with none left, forwarding goes off again (unless the flat bridge still needs it).
 */
async function handOnForwardingMark(): Promise<void> {
  const heir = (await listLinks()).find((link) => isVmVeth(link) && !link.ifalias?.endsWith(FORWARDING_TURNED_ON));
  if (heir)
    await ip(
      ['link', 'set', 'dev', heir.ifname, 'alias', `${heir.ifalias ?? ''}${FORWARDING_TURNED_ON}`],
      `noting on ${heir.ifname} that IP forwarding was off`,
    );
  else await restoreForwarding();
}

function namespaceSysctls(): string {
  return [
    'echo 1 > /proc/sys/net/ipv4/ip_forward',
    `echo 1 > /proc/sys/net/ipv4/conf/${GUEST_TAP}/proxy_arp`,
    // Proxy ARP answers at once, not after a random wait of up to 0.8 s.
    `echo 0 > /proc/sys/net/ipv4/neigh/${GUEST_TAP}/proxy_delay`,
  ].join(' && ');
}

/** A MAC for one end of a VM's veth: locally administered, unicast, the VM's own octets after `first`. */
function vethMac(vmId: string, first: '0a' | '0e'): string {
  return `${first}${macOf(vmId).slice(2)}`;
}

function isVmVeth(link: LinkInfo): boolean {
  return VM_NETNS_PATTERN.test(link.ifname) && link.linkinfo?.info_kind === 'veth' && markOf(link) !== undefined;
}

function markOf(link: LinkInfo): { vmId: string; networkId: string } | undefined {
  const match = VETH_MARK.exec(link.ifalias ?? '');
  return match?.[1] && match[2] ? { vmId: match[1], networkId: match[2] } : undefined;
}

function assertNetnsName(name: string): void {
  if (!VM_NETNS_PATTERN.test(name)) throw new NexusError('bad_request', `'${name}' is not a Nexus VM namespace name (nxv- and 8 hex digits of the VM id)`);
}

/** A device with a VM namespace's name must be the host end of a veth Nexus made; anything else is someone else's. */
function assertOurs(device: LinkInfo): void {
  if (device.linkinfo?.info_kind === 'veth' && markOf(device)) return;
  throw new NexusError('conflict', `a ${device.linkinfo?.info_kind ?? 'network'} device named ${device.ifname} already exists and was not made by Nexus`, {
    suggestion: `Remove or rename ${device.ifname}; Nexus names each VM's veth from its id.`,
  });
}

async function netnsExists(name: string): Promise<boolean> {
  return access(netnsPathOf(name)).then(
    () => true,
    () => false,
  );
}

/** The Nexus VM namespaces `ip netns` knows. */
async function namespaces(): Promise<string[]> {
  return (await readdir('/run/netns').catch(() => [])).filter((name) => VM_NETNS_PATTERN.test(name));
}

/** Runs `ip` commands as one batch (one process); the first that fails stops it, and its line is in the error. */
async function ipBatch(commands: string[], options: string[], doing: string): Promise<void> {
  await runHostTool('ip', [...options, '-batch', '-'], { input: `${commands.join('\n')}\n`, doing });
}
