import type { Logger } from 'pino';
import { NexusError } from '../../../kit/nexus-error.js';
import { TAP_NAME_PATTERN, VM_NETNS_PATTERN, tapNameOf } from '../../../contracts/host-names.js';
import { VmNamespaces } from './vm-namespaces.js';
import { type Ipv4Cidr, networkOf } from '../../domain/ipv4.js';
import type { HostNetwork, NetworkNic } from '../../ports/host-network.js';
import { type LinkInfo, ip, listLinks, readLink } from './ip-command.js';
import {
  type NatBackend,
  FORWARDING_TURNED_ON,
  detectNatBackend,
  enableIpForwarding,
  ensureMasquerade,
  hasMasquerade,
  masqueradeName,
  removeMasquerade,
  restoreForwarding,
} from './nat.js';

export interface BridgeNetworkConfig {
  /** The host's guest bridge. NEXUS_BRIDGE, default fcbr0. */
  bridge: string;
  /** The bridge's address; guests live in its subnet. NEXUS_BRIDGE_CIDR, default 172.31.0.1/24. */
  cidr: Ipv4Cidr;
  /** Masquerade guest traffic out of the host. NEXUS_NAT, default on. */
  nat: boolean;
  /** Where rules are kept (the bridge's NAT, networks' rules, published ports). NEXUS_FIREWALL; default: nftables when `nft` is installed, else iptables. */
  natBackend?: NatBackend;
  /** The agent's folder for its VMs' networking: their records and DHCP servers (`<run-dir>/net`). */
  netDir: string;
}

/** The alias (`ip link … alias`) of a bridge Nexus made, which it may therefore remove. */
const BRIDGE_MARK = 'nexus guest bridge';
/**
 * The mark of a bridge whose NAT set-up found IP forwarding off and turned it on: the tear-down
 * that removes the bridge turns it off again, whichever process (or start) does it.
 */
const FORWARDING_MARK = `${BRIDGE_MARK}${FORWARDING_TURNED_ON}`;

/**
 * A host's guest networking: for VMs on networks, a namespace each ({@link VmNamespaces}); for
 * VMs on no network, one Linux bridge per host with an address and (optionally) NAT, and a TAP per
 * NIC attached to it. The bridge is made on first use and kept (only an agent whose VMs end with it
 * tears it down); TAPs and namespaces come and go with their VMs.
 */
export class BridgeNetwork implements HostNetwork {
  private bridgeReady: Promise<void> | undefined;
  private natBackend: NatBackend | undefined;
  private readonly namespaces: VmNamespaces;

  constructor(
    private readonly config: BridgeNetworkConfig,
    private readonly log: Logger,
  ) {
    this.namespaces = new VmNamespaces(log, config.netDir, config.natBackend);
  }

  /** Creates the bridge if missing, gives it its address, brings it up, and sets up NAT. Idempotent. */
  ensureBridge(): Promise<void> {
    this.bridgeReady ??= this.makeBridge().catch((error: unknown) => {
      this.bridgeReady = undefined;
      throw error;
    });
    return this.bridgeReady;
  }

  async ensureNic(vmId: string, owner?: { uid: number; gid: number }, nic?: NetworkNic): Promise<void> {
    if (nic) return this.namespaces.ensure(vmId, nic, owner);
    await this.ensureBridge();
    return this.makeTap(tapNameOf(vmId), this.config.bridge, owner);
  }

  /** Creates the TAP (replacing a stale one of ours), attached to `bridge` and up. */
  private async makeTap(name: string, bridge: string, owner?: { uid: number; gid: number }): Promise<void> {
    const existing = await readLink(name);
    if (existing) {
      assertOurs(existing.ifname, existing.linkinfo?.info_kind);
      await ip(['link', 'del', 'dev', name], `deleting the stale TAP ${name}`);
    }
    // Who may open it besides root: the VM's jailed VMM, under a uid of its own (a recreated TAP takes the current owner).
    const ownerArgs = owner ? ['user', String(owner.uid), 'group', String(owner.gid)] : [];
    await ip(['tuntap', 'add', 'dev', name, 'mode', 'tap', ...ownerArgs], `creating TAP ${name}`);
    try {
      await ip(['link', 'set', 'dev', name, 'master', bridge], `attaching TAP ${name} to ${bridge}`);
      await ip(['link', 'set', 'dev', name, 'up'], `bringing TAP ${name} up`);
    } catch (error) {
      await ip(['link', 'del', 'dev', name], `removing the half-made TAP ${name}`).catch((undoError: unknown) =>
        this.log.error({ err: undoError }, `could not remove TAP ${name}`),
      );
      throw error;
    }
  }

  async removeDevice(name: string): Promise<void> {
    if (VM_NETNS_PATTERN.test(name)) return this.namespaces.remove(name);
    assertTapName(name);
    const existing = await readLink(name);
    if (!existing) return;
    assertOurs(existing.ifname, existing.linkinfo?.info_kind);
    await ip(['link', 'del', 'dev', name], `deleting TAP ${name}`);
  }

  async isConnected(name: string): Promise<boolean> {
    if (VM_NETNS_PATTERN.test(name)) return this.namespaces.isConnected(name);
    return (await readLink(name))?.linkinfo?.info_kind === 'tun';
  }

  /** Nexus TAPs on this agent's bridge, or on none (detached leftovers), never another bridge's; and the VM namespaces. */
  async listDevices(): Promise<string[]> {
    const taps = (await listLinks())
      .filter((link) => TAP_NAME_PATTERN.test(link.ifname) && link.linkinfo?.info_kind === 'tun')
      .filter((link) => link.master === undefined || link.master === this.config.bridge)
      .map((link) => link.ifname);
    return [...taps, ...(await this.namespaces.list())].sort();
  }

  /**
   * Removes the guest network of an agent whose VMs end with it, once none of its VMMs runs: the
   * devices in `devices` (its VMs' TAPs and namespaces), what a crash left of networks, and every other Nexus TAP attached to this bridge that no process
   * holds open (a VM whose folder is gone; one held open belongs to a VMM still running, another
   * agent's on a shared bridge). Then, when nothing else is attached to the bridge, the NAT and the
   * bridge itself if it is Nexus's: it carries Nexus's mark, or (made by an older Nexus, which did
   * not mark its bridges) nothing but Nexus TAPs was attached to it. A bridge with a device of
   * someone else's on it stays, with its NAT. Every removal is tried; the ones that failed are
   * reported together at the end.
   */
  async tearDown(devices: string[]): Promise<void> {
    const { bridge, cidr } = this.config;
    const plan = await this.tearDownPlan(devices);
    const failures: string[] = [];
    for (const device of [...plan.taps, ...plan.namespaces]) {
      await this.removeDevice(device).catch((error: unknown) => failures.push(error instanceof Error ? error.message : String(error)));
    }
    // Network rules went with their last VM; any a crash left behind (or DHCP servers) go now.
    await this.namespaces.sweep().catch((error: unknown) => failures.push(error instanceof Error ? error.message : String(error)));
    if (plan.kept.length > 0) {
      this.log.warn({ bridge, attached: plan.kept }, 'left the bridge and its NAT: other devices are still attached to it');
    } else {
      if (this.config.nat) {
        const backend = await this.backend();
        if (backend) await removeMasquerade(backend, bridge, networkOf(cidr)).catch((error: unknown) => failures.push((error as Error).message));
      }
      if (plan.bridgeIsOurs) {
        try {
          await ip(['link', 'del', 'dev', bridge], `deleting bridge ${bridge}`);
          if (plan.forwardingTurnedOn) await restoreForwarding();
        } catch (error) {
          failures.push((error as Error).message);
        }
      } else if (plan.bridgeExists) {
        this.log.info({ bridge }, 'left the bridge: Nexus did not make it, and no Nexus TAP was on it');
      }
    }
    this.bridgeReady = undefined;
    this.natBackend = undefined;
    if (failures.length > 0) {
      throw new NexusError('unavailable', `could not remove all of the guest network: ${failures.join('; ')}`, {
        suggestion: 'Remove what is left by hand: `ip link del dev <name>`, and the NAT (`nft list tables`, `iptables -t nat -S`).',
      });
    }
  }

  /** What {@link tearDown} with these `devices` would remove that is still there, each named for a message (`TAP tap-…`, `bridge …`, the NAT). */
  async tearDownLeft(devices: string[]): Promise<string[]> {
    const { bridge, cidr } = this.config;
    const plan = await this.tearDownPlan(devices);
    const left = [...plan.taps.map((tap) => `TAP ${tap}`), ...plan.namespaces.map((netns) => `namespace ${netns}`), ...(await this.namespaces.unused())];
    // With a device of someone else's attached, the bridge and its NAT rightly stay.
    if (plan.kept.length === 0) {
      if (plan.bridgeIsOurs) left.push(`bridge ${bridge}`);
      const backend = this.config.nat ? await this.backend() : undefined;
      if (backend && (await hasMasquerade(backend, bridge, networkOf(cidr)))) left.push(masqueradeName(backend, bridge));
    }
    return left;
  }

  /**
   * Which TAPs a tear-down removes (those given that exist, and the Nexus TAPs on the bridge no
   * process holds: no carrier), which namespaces (those given that exist), which devices stay
   * attached after it, and whether the bridge is Nexus's.
   */
  private async tearDownPlan(devices: string[]): Promise<{
    taps: string[];
    namespaces: string[];
    kept: string[];
    bridgeExists: boolean;
    bridgeIsOurs: boolean;
    forwardingTurnedOn: boolean;
  }> {
    const { bridge } = this.config;
    const links = await listLinks();
    const given = new Set(devices);
    const namespaces = (await this.namespaces.list()).filter((name) => given.has(name));
    const isNexusTap = (link: LinkInfo) => TAP_NAME_PATTERN.test(link.ifname) && link.linkinfo?.info_kind === 'tun';
    const removed = links.filter((link) => isNexusTap(link) && (given.has(link.ifname) || (link.master === bridge && !link.flags?.includes('LOWER_UP'))));
    const attached = links.filter((link) => link.master === bridge);
    const kept = attached.filter((link) => !removed.includes(link)).map((link) => link.ifname);
    const device = links.find((link) => link.ifname === bridge);
    const bridgeExists = device?.linkinfo?.info_kind === 'bridge';
    const nexusTapsOnly = attached.length > 0 && attached.every(isNexusTap);
    return {
      taps: removed.map((link) => link.ifname).sort(),
      namespaces,
      kept,
      bridgeExists,
      bridgeIsOurs: bridgeExists && (device?.ifalias?.startsWith(BRIDGE_MARK) === true || nexusTapsOnly),
      forwardingTurnedOn: bridgeExists && device?.ifalias === FORWARDING_MARK,
    };
  }

  private async backend(): Promise<NatBackend | undefined> {
    return this.natBackend ?? this.config.natBackend ?? (await detectNatBackend());
  }

  /** Removes the bridge and its NAT whoever made them: for tests and for uninstalling, never done by the agent itself. */
  async removeBridge(): Promise<void> {
    const backend = await this.backend();
    if (backend) await removeMasquerade(backend, this.config.bridge, networkOf(this.config.cidr));
    const device = await readLink(this.config.bridge);
    if (device) {
      await ip(['link', 'del', 'dev', this.config.bridge], `deleting bridge ${this.config.bridge}`);
      if (device.ifalias === FORWARDING_MARK) await restoreForwarding();
    }
    this.bridgeReady = undefined;
  }

  private async makeBridge(): Promise<void> {
    const { bridge, cidr } = this.config;
    const existing = await readLink(bridge);
    if (existing && existing.linkinfo?.info_kind !== 'bridge') {
      throw new NexusError('conflict', `${bridge} exists and is not a bridge (${existing.linkinfo?.info_kind ?? 'unknown kind'})`, {
        suggestion: `Remove it, or choose another bridge name with NEXUS_BRIDGE.`,
      });
    }
    if (!existing) {
      await ip(['link', 'add', 'name', bridge, 'type', 'bridge'], `creating bridge ${bridge}`);
      // The mark says Nexus made it, so a later tearDown (of this run or the next) may remove it.
      await ip(['link', 'set', 'dev', bridge, 'alias', BRIDGE_MARK], `marking bridge ${bridge} as made by Nexus`);
    }
    const addresses = existing?.addr_info?.filter((entry) => entry.family === 'inet') ?? [];
    if (!addresses.some((entry) => entry.local === cidr.address && entry.prefixlen === cidr.prefixLength)) {
      await ip(['addr', 'add', `${cidr.address}/${cidr.prefixLength}`, 'dev', bridge], `addressing bridge ${bridge}`);
    }
    await ip(['link', 'set', 'dev', bridge, 'up'], `bringing bridge ${bridge} up`);
    if (this.config.nat) {
      this.natBackend = this.config.natBackend ?? (await detectNatBackend());
      if (!this.natBackend) {
        throw new NexusError('unavailable', 'neither nft nor iptables is installed, so guests cannot reach out', {
          suggestion: 'apt-get install nftables, or set NEXUS_NAT=off.',
        });
      }
      const turnedOn = await enableIpForwarding();
      const ours = existing === undefined || existing.ifalias?.startsWith(BRIDGE_MARK) === true;
      if (turnedOn && ours) await ip(['link', 'set', 'dev', bridge, 'alias', FORWARDING_MARK], `noting on bridge ${bridge} that IP forwarding was off`);
      await ensureMasquerade(this.natBackend, bridge, networkOf(cidr));
    }
    this.log.info({ bridge, address: `${cidr.address}/${cidr.prefixLength}`, nat: this.natBackend ?? 'off' }, 'bridge ready');
  }
}

function assertTapName(name: string): void {
  if (!TAP_NAME_PATTERN.test(name)) {
    throw new NexusError('bad_request', `'${name}' is not a Nexus TAP name (tap- and 8 hex digits of the VM id)`);
  }
}

/** A device with one of our names that is not a TAP was made by someone else: never touch it. */
function assertOurs(name: string, kind: string | undefined): void {
  if (kind !== 'tun') {
    throw new NexusError('conflict', `a ${kind ?? 'network'} device named ${name} already exists and was not made by Nexus`, {
      suggestion: `Remove or rename ${name}; Nexus names each VM's TAP from its id.`,
    });
  }
}
