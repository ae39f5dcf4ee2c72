import { execFileSync } from 'node:child_process';
import { networkKeyOf, networkTableNameOf, publishTableNameOf, vmKeyOf } from '../../src/contracts/host-names.js';

export type Backend = 'nftables' | 'iptables';

/**
 * What a test reads of the rules an agent keeps, under either backend, read with the tools
 * themselves (never through the agent's code): the names present on the host, and the text of a
 * network's, a VM's ports' and a VM namespace's rules.
 */
export interface FirewallView {
  backend: Backend;
  /** Every name of ours on the host (nftables tables, or iptables chains), as text to match. */
  present(): string;
  /** How a network's rules, or a VM's published ports, are named in {@link present}. */
  networkName(networkId: string): string;
  publishName(vmId: string): string;
  /** The rules themselves, as the tool lists them; nothing when there are none. */
  networkRules(networkId: string): string;
  publishRules(vmId: string): string;
  netnsRules(netns: string): string;
  /** Makes an empty leftover of a network's rules, or of a VM's ports (as a crash would leave), and how the agent names it. */
  leaveNetwork(networkId: string): string;
  leavePublished(vmId: string): string;
}

const run = (command: string, args: string[]) => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** An nftables table of family inet as `nft` lists it; nothing when it is not there. */
function tableOrNothing(table: string): string {
  return run('nft', ['list', 'tables', 'inet']).includes(`table inet ${table}\n`) ? run('nft', ['list', 'table', 'inet', table]) : '';
}

export function firewallView(backend: Backend): FirewallView {
  if (backend === 'nftables') {
    return {
      backend,
      present: () => run('nft', ['list', 'tables']),
      networkName: networkTableNameOf,
      publishName: publishTableNameOf,
      networkRules: (id) => tableOrNothing(networkTableNameOf(id)),
      publishRules: (id) => tableOrNothing(publishTableNameOf(id)),
      netnsRules: (netns) => run('ip', ['netns', 'exec', netns, 'nft', 'list', 'table', 'inet', 'nexus_vm']),
      leaveNetwork: (id) => {
        run('nft', ['add', 'table', 'inet', networkTableNameOf(id)]);
        return `nftables table ${networkTableNameOf(id)}`;
      },
      leavePublished: (id) => {
        run('nft', ['add', 'table', 'inet', publishTableNameOf(id)]);
        return `nftables table ${publishTableNameOf(id)}`;
      },
    };
  }
  const saved = () => `${run('iptables-save', ['-t', 'filter'])}${run('iptables-save', ['-t', 'nat'])}`;
  const linesOf = (name: string) =>
    saved()
      .split('\n')
      .filter((line) => line.includes(name))
      .join('\n');
  return {
    backend,
    present: () =>
      saved()
        .split('\n')
        .filter((line) => line.startsWith(':'))
        .join('\n'),
    networkName: (id) => `NXN-${networkKeyOf(id)}-`,
    publishName: (id) => `NXP-${vmKeyOf(id)}-`,
    networkRules: (id) => linesOf(`NXN-${networkKeyOf(id)}-`),
    publishRules: (id) => linesOf(`NXP-${vmKeyOf(id)}-`),
    netnsRules: (netns) => run('ip', ['netns', 'exec', netns, 'iptables-save']),
    leaveNetwork: (id) => {
      run('iptables', ['-w', '-N', `NXN-${networkKeyOf(id)}-FWD`]);
      return `iptables chains NXN-${networkKeyOf(id)}-*`;
    },
    leavePublished: (id) => {
      run('iptables', ['-w', '-t', 'nat', '-N', `NXP-${vmKeyOf(id)}-DNAT`]);
      return `iptables chains NXP-${vmKeyOf(id)}-*`;
    },
  };
}

/**
 * iptables-nft makes the nftables tables `ip filter` and `ip nat` on first use and never removes
 * them: a test that may be the first to use iptables notes which were there, and `restore`
 * removes those it made (once its own rules are gone).
 */
export function iptablesTablesGuard(): { restore(): void } {
  const tables = () => run('nft', ['list', 'tables']);
  const before = tables();
  return {
    restore() {
      const now = tables();
      for (const table of ['filter', 'nat']) {
        const pattern = new RegExp(`table ip ${table}\\b`);
        if (!pattern.test(before) && pattern.test(now)) run('nft', ['delete', 'table', 'ip', table]);
      }
    },
  };
}
