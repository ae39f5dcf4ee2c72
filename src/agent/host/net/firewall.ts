import { netnsPathOf } from '../../../contracts/host-names.js';
import { runHostTool } from '../../../kit/host-tool.js';
import {
  type IptablesRules,
  type NetworkRules,
  type PublishRules,
  type VmNetnsRules,
  iptablesDeletions,
  jumpLeads,
  networkChains,
  networkIptables,
  networkRuleset,
  publishChains,
  publishIptables,
  publishRuleset,
  vmNetnsIptables,
  vmNetnsRuleset,
} from '../../domain/network-ruleset.js';
import type { NatBackend } from './nat.js';

/**
 * Where a host keeps the rules of its VMs on networks: each network's (isolation, egress, NAT),
 * each VM's published ports, and the rules inside each VM's namespace. Rules are named from a key
 * (8 hex digits of the network's or the VM's id), so the sweep finds and removes leftovers. Every
 * write replaces the whole of what it names; every removal of what is absent is fine.
 */
export interface Firewall {
  readonly backend: NatBackend;
  /** Writes a network's rules whole, for these veths. */
  writeNetwork(key: string, rules: Omit<NetworkRules, 'table'>): Promise<void>;
  /** Takes one veth out of a network's rules, leaving the rest as they are. */
  dropFromNetwork(key: string, veth: string): Promise<void>;
  removeNetwork(key: string): Promise<void>;
  /** The keys of the networks with rules on this host. */
  networks(): Promise<string[]>;
  /** Writes the rules inside a VM's namespace whole. */
  writeVmNetns(netns: string, rules: Omit<VmNetnsRules, 'table'>): Promise<void>;
  /** Writes a VM's published ports whole. */
  publish(key: string, rules: Omit<PublishRules, 'table'>): Promise<void>;
  unpublish(key: string): Promise<void>;
  /** The keys of the VMs with published ports on this host. */
  published(): Promise<string[]>;
  /** What a network's rules, or a VM's ports, are called here: for messages. */
  nameOf(kind: 'network' | 'ports', key: string): string;
}

export function firewallOf(backend: NatBackend): Firewall {
  return backend === 'nftables' ? new NftablesFirewall() : new IptablesFirewall();
}

/** The table inside each VM namespace. */
const NETNS_TABLE = 'nexus_vm';

/** nftables: a table of family inet per network and per VM's ports, its set `vms` listing a network's veths. */
class NftablesFirewall implements Firewall {
  readonly backend = 'nftables';

  async writeNetwork(key: string, rules: Omit<NetworkRules, 'table'>): Promise<void> {
    await nft(networkRuleset({ table: networkTable(key), ...rules }), `writing the rules of network ${key}`);
  }

  async dropFromNetwork(key: string, veth: string): Promise<void> {
    // Not in the set is fine: a whole write that came meanwhile left it out already.
    await nft(`delete element inet ${networkTable(key)} vms { "${veth}" }\n`, `taking ${veth} out of the rules of network ${key}`).catch(() => undefined);
  }

  async removeNetwork(key: string): Promise<void> {
    await nft(dropTable(networkTable(key)), `removing the rules of network ${key}`);
  }

  async networks(): Promise<string[]> {
    return keysOf(await nftTables(), /^nexus_net_([0-9a-f]{8})$/);
  }

  async writeVmNetns(netns: string, rules: Omit<VmNetnsRules, 'table'>): Promise<void> {
    await inNetns(netns, 'nft', ['-f', '-'], { input: vmNetnsRuleset({ table: NETNS_TABLE, ...rules }), doing: `writing the rules of ${netns}` });
  }

  async publish(key: string, rules: Omit<PublishRules, 'table'>): Promise<void> {
    await nft(publishRuleset({ table: publishTable(key), ...rules }), `publishing the ports of VM ${key}`);
  }

  async unpublish(key: string): Promise<void> {
    await nft(dropTable(publishTable(key)), `removing the published ports of VM ${key}`);
  }

  async published(): Promise<string[]> {
    return keysOf(await nftTables(), /^nexus_pub_([0-9a-f]{8})$/);
  }

  nameOf(kind: 'network' | 'ports', key: string): string {
    return `nftables table ${kind === 'network' ? networkTable(key) : publishTable(key)}`;
  }
}

/**
 * iptables, for hosts without nftables: chains of ours per network and per VM's ports (see
 * {@link networkIptables}), written with `iptables-restore --noflush` and reached by jumps added
 * once at the head of the built-in chains.
 */
class IptablesFirewall implements Firewall {
  readonly backend = 'iptables';

  async writeNetwork(key: string, rules: Omit<NetworkRules, 'table'>): Promise<void> {
    await this.apply(networkIptables(key, rules), `writing the rules of network ${key}`);
  }

  async dropFromNetwork(key: string, veth: string): Promise<void> {
    const saved = { filter: await iptablesSave('filter'), nat: await iptablesSave('nat') };
    const script = iptablesDeletions(saved, networkChains(key).chains, veth);
    // A rule gone meanwhile (a whole write left the veth out) fails the batch: nothing of it is left to delete.
    if (script) await restore(script, `taking ${veth} out of the rules of network ${key}`).catch(() => undefined);
  }

  async removeNetwork(key: string): Promise<void> {
    await this.remove(networkChains(key), `removing the rules of network ${key}`);
  }

  async networks(): Promise<string[]> {
    return keysOf(await this.chains(), /^NXN-([0-9a-f]{8})-/);
  }

  async writeVmNetns(netns: string, rules: Omit<VmNetnsRules, 'table'>): Promise<void> {
    await inNetns(netns, 'iptables-restore', ['-w'], { input: vmNetnsIptables(rules), doing: `writing the rules of ${netns}` });
  }

  async publish(key: string, rules: Omit<PublishRules, 'table'>): Promise<void> {
    await this.apply(publishIptables(key, rules), `publishing the ports of VM ${key}`);
  }

  async unpublish(key: string): Promise<void> {
    await this.remove(publishChains(key), `removing the published ports of VM ${key}`);
  }

  async published(): Promise<string[]> {
    return keysOf(await this.chains(), /^NXP-([0-9a-f]{8})-/);
  }

  nameOf(kind: 'network' | 'ports', key: string): string {
    return `iptables chains ${kind === 'network' ? 'NXN' : 'NXP'}-${key}-*`;
  }

  /**
   * Writes the chains whole, then makes sure each jump to them is there, ahead of every rule of
   * someone else's: inserted first, and an older copy lower down deleted.
   */
  private async apply(rules: IptablesRules, doing: string): Promise<void> {
    await restore(rules.script, doing);
    for (const jump of rules.jumps) {
      const listed = async () => (await runHostTool('iptables', ['-w', '-t', jump.table, '-S', jump.chain], { doing })).stdout;
      if (jumpLeads(await listed(), jump)) continue;
      await iptables(['-t', jump.table, '-I', jump.chain, '1', ...jump.rule], doing);
      // -D deletes the first copy, the one just inserted: delete the older by its number instead.
      const numbers = (await listed())
        .split('\n')
        .filter((line) => line.startsWith(`-A ${jump.chain} `))
        .flatMap((line, index) => (line === `-A ${jump.chain} ${jump.rule.join(' ')}` ? [index + 1] : []));
      for (const number of numbers.slice(1).reverse()) await iptables(['-t', jump.table, '-D', jump.chain, String(number)], doing);
    }
  }

  /** Removes the jumps to the chains (every copy), then the chains that exist: emptied first, as they jump to one another. */
  private async remove(rules: Omit<IptablesRules, 'script'>, doing: string): Promise<void> {
    const present = new Set(await this.chains());
    const ours = (['filter', 'nat'] as const).flatMap((table) => rules.chains[table].filter((chain) => present.has(chain)).map((chain) => ({ table, chain })));
    if (ours.length === 0) return;
    for (const jump of rules.jumps) {
      if (!present.has(jump.rule.at(-1) ?? '')) continue;
      while (
        await iptables(['-t', jump.table, '-D', jump.chain, ...jump.rule], doing).then(
          () => true,
          () => false,
        )
      );
    }
    for (const { table, chain } of ours) await iptables(['-t', table, '-F', chain], doing);
    for (const { table, chain } of ours) await iptables(['-t', table, '-X', chain], doing);
  }

  /** The user-defined chains of the filter and nat tables. */
  private async chains(): Promise<string[]> {
    const saved = `${await iptablesSave('filter')}\n${await iptablesSave('nat')}`;
    return saved.split('\n').flatMap((line) => (line.startsWith(':') && / - \[/.test(line) ? [line.slice(1).split(' ')[0] ?? ''] : []));
  }
}

function keysOf(names: readonly string[], pattern: RegExp): string[] {
  return [...new Set(names.flatMap((name) => pattern.exec(name)?.[1] ?? []))].sort();
}

function networkTable(key: string): string {
  return `nexus_net_${key}`;
}

function publishTable(key: string): string {
  return `nexus_pub_${key}`;
}

/** Removes a table whether or not it is there: declared, then deleted, in one transaction. */
function dropTable(table: string): string {
  return `table inet ${table} {}\ndelete table inet ${table}\n`;
}

/** The names of the host's nftables tables of family inet. */
async function nftTables(): Promise<string[]> {
  const { stdout } = await runHostTool('nft', ['-j', 'list', 'tables', 'inet'], { doing: 'listing nftables tables' });
  const entries = (JSON.parse(stdout) as { nftables?: Array<{ table?: { name: string } }> }).nftables ?? [];
  return entries.flatMap((entry) => (entry.table ? [entry.table.name] : []));
}

async function nft(script: string, doing: string): Promise<void> {
  await runHostTool('nft', ['-f', '-'], { input: script, doing });
}

/** One table as `iptables-save` shows it: nothing when the table was never made. */
async function iptablesSave(table: 'filter' | 'nat'): Promise<string> {
  return (await runHostTool('iptables-save', ['-t', table], { doing: `listing the iptables ${table} table` })).stdout;
}

async function restore(script: string, doing: string): Promise<void> {
  await runHostTool('iptables-restore', ['-w', '--noflush'], { input: script, doing });
}

async function iptables(args: string[], doing: string): Promise<void> {
  await runHostTool('iptables', ['-w', ...args], { doing });
}

/** Runs a program inside a VM's namespace. */
export function inNetns(netns: string, command: string, args: string[], options: { doing: string; input?: string }): Promise<unknown> {
  return runHostTool('nsenter', [`--net=${netnsPathOf(netns)}`, '--', command, ...args], options);
}
