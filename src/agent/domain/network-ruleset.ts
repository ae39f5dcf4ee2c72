/** What a network's rules on a host are made from. */
export interface NetworkRules {
  /** The nftables table (family inet) the rules live in: one per network, so removing them is one command. */
  table: string;
  /** The network's bridge on this host. */
  bridge: string;
  /** The block, e.g. 10.220.8.0/24, and its gateway (the bridge's address). */
  cidr: string;
  gateway: string;
  egress: 'allow' | 'deny';
}

/**
 * The `nft -f` script that makes a network's table exactly so, in one transaction (declare, delete,
 * write whole: a re-run replaces, never appends). Every rule names only this network's bridge, so
 * each network's table stands alone, and a packet any table drops is dropped:
 * - forward: nothing crosses between this network and another Nexus network (either way); with
 *   `egress: deny`, nothing leaves it but replies to what came in;
 * - input: its guests reach the host only for DHCP and a ping of the gateway (and replies to what
 *   the host asked), never the host's other services or another network's gateway;
 * - postrouting: with `egress: allow`, what leaves the host from it is masqueraded.
 * Traffic between two guests of the network is bridged, and no rule here sees it.
 */
export function networkRuleset(rules: NetworkRules): string {
  const { table, bridge, cidr, gateway, egress } = rules;
  const lines = [
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    iifname "${bridge}" oifname "nxb-*" oifname != "${bridge}" drop`,
    `    oifname "${bridge}" iifname "nxb-*" iifname != "${bridge}" drop`,
    ...(egress === 'deny'
      ? [`    iifname "${bridge}" oifname != "${bridge}" ct state established,related accept`, `    iifname "${bridge}" oifname != "${bridge}" drop`]
      : []),
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname "${bridge}" ct state established,related accept`,
    `    iifname "${bridge}" udp dport 67 accept`,
    `    iifname "${bridge}" ip daddr ${gateway} icmp type echo-request accept`,
    `    iifname "${bridge}" drop`,
    '  }',
    ...(egress === 'allow'
      ? [
          '  chain postrouting {',
          '    type nat hook postrouting priority srcnat; policy accept;',
          `    ip saddr ${cidr} oifname != "${bridge}" masquerade`,
          '  }',
        ]
      : []),
    '}',
  ];
  return `${lines.join('\n')}\n`;
}
