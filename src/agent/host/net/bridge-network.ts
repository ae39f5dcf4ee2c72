import type { Logger } from 'pino';
import { NexusError } from '../../../kit/nexus-error.js';
import { TAP_NAME_PATTERN } from '../../../contracts/host-names.js';
import { type Ipv4Cidr, networkOf } from '../../domain/ipv4.js';
import type { HostNetwork } from '../../ports/host-network.js';
import { ip, listLinks, readLink } from './ip-command.js';
import { type NatBackend, detectNatBackend, enableIpForwarding, ensureMasquerade, removeMasquerade } from './nat.js';

export interface BridgeNetworkConfig {
  /** The host's guest bridge. NEXUS_BRIDGE, default fcbr0. */
  bridge: string;
  /** The bridge's address; guests live in its subnet. NEXUS_BRIDGE_CIDR, default 172.31.0.1/24. */
  cidr: Ipv4Cidr;
  /** Masquerade guest traffic out of the host. NEXUS_NAT, default on. */
  nat: boolean;
  /** Who may open the TAPs besides root: the jailed VMM's user, when Firecracker runs jailed. */
  tapOwner?: { uid: number; gid: number };
}

/**
 * One Linux bridge per host with an address and (optionally) NAT, and one TAP per NIC attached to
 * it. The bridge is made on first use and kept; TAPs come and go with their VMs.
 */
export class BridgeNetwork implements HostNetwork {
  private bridgeReady: Promise<void> | undefined;
  private natBackend: NatBackend | undefined;

  constructor(
    private readonly config: BridgeNetworkConfig,
    private readonly log: Logger,
  ) {}

  /** Creates the bridge if missing, gives it its address, brings it up, and sets up NAT. Idempotent. */
  ensureBridge(): Promise<void> {
    this.bridgeReady ??= this.makeBridge().catch((error: unknown) => {
      this.bridgeReady = undefined;
      throw error;
    });
    return this.bridgeReady;
  }

  async ensureTap(name: string): Promise<void> {
    assertTapName(name);
    await this.ensureBridge();
    const existing = await readLink(name);
    if (existing) {
      assertOurs(existing.ifname, existing.linkinfo?.info_kind);
      await ip(['link', 'del', 'dev', name], `deleting the stale TAP ${name}`);
    }
    const owner = this.config.tapOwner ? ['user', String(this.config.tapOwner.uid), 'group', String(this.config.tapOwner.gid)] : [];
    await ip(['tuntap', 'add', 'dev', name, 'mode', 'tap', ...owner], `creating TAP ${name}`);
    try {
      await ip(['link', 'set', 'dev', name, 'master', this.config.bridge], `attaching TAP ${name} to ${this.config.bridge}`);
      await ip(['link', 'set', 'dev', name, 'up'], `bringing TAP ${name} up`);
    } catch (error) {
      await ip(['link', 'del', 'dev', name], `removing the half-made TAP ${name}`).catch((undoError: unknown) =>
        this.log.error({ err: undoError }, `could not remove TAP ${name}`),
      );
      throw error;
    }
  }

  async deleteTap(name: string): Promise<void> {
    assertTapName(name);
    const existing = await readLink(name);
    if (!existing) return;
    assertOurs(existing.ifname, existing.linkinfo?.info_kind);
    await ip(['link', 'del', 'dev', name], `deleting TAP ${name}`);
  }

  /** Nexus TAPs on this agent's bridge, or on none (detached leftovers); never another bridge's. */
  async listTaps(): Promise<string[]> {
    return (await listLinks())
      .filter((link) => TAP_NAME_PATTERN.test(link.ifname) && link.linkinfo?.info_kind === 'tun')
      .filter((link) => link.master === undefined || link.master === this.config.bridge)
      .map((link) => link.ifname)
      .sort();
  }

  /** Removes the bridge and its NAT: for tests and for uninstalling, never done by the agent itself. */
  async removeBridge(): Promise<void> {
    const backend = this.natBackend ?? (await detectNatBackend());
    if (backend) await removeMasquerade(backend, this.config.bridge, networkOf(this.config.cidr));
    if (await readLink(this.config.bridge)) await ip(['link', 'del', 'dev', this.config.bridge], `deleting bridge ${this.config.bridge}`);
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
    if (!existing) await ip(['link', 'add', 'name', bridge, 'type', 'bridge'], `creating bridge ${bridge}`);
    const addresses = existing?.addr_info?.filter((entry) => entry.family === 'inet') ?? [];
    if (!addresses.some((entry) => entry.local === cidr.address && entry.prefixlen === cidr.prefixLength)) {
      await ip(['addr', 'add', `${cidr.address}/${cidr.prefixLength}`, 'dev', bridge], `addressing bridge ${bridge}`);
    }
    await ip(['link', 'set', 'dev', bridge, 'up'], `bringing bridge ${bridge} up`);
    if (this.config.nat) {
      this.natBackend = await detectNatBackend();
      if (!this.natBackend) {
        throw new NexusError('unavailable', 'neither nft nor iptables is installed, so guests cannot reach out', {
          suggestion: 'apt-get install nftables, or set NEXUS_NAT=off.',
        });
      }
      await enableIpForwarding();
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
