/** An `nft -f` script that makes `table` (family inet) exactly `body`, in one transaction: declared, deleted, written whole (a re-run replaces, never appends). */
function wholeTable(table: string, body: readonly string[]): string {
  return `${[`table inet ${table} {}`, `delete table inet ${table}`, `table inet ${table} {`, ...body, '}'].join('\n')}\n`;
}

/** What a network's rules on a host are made from. */
export interface NetworkRules {
  /** The nftables table (family inet) the rules live in: one per network, so removing them is one command. */
  table: string;
  /** The block, e.g. 10.220.8.0/24. */
  cidr: string;
  egress: 'allow' | 'deny';
  /** The host ends of the veths of the network's VMs on this host (`nxv-…`). */
  vms: readonly string[];
}

/**
 * The `nft -f` script that makes a network's table on the host exactly so, in one transaction
 * (declare, delete, write whole: a re-run replaces, never appends). The set `vms` holds the host
 * ends of the network's veths, and every rule names only it, so each network's table stands alone,
 * and a packet any table drops is dropped:
 * - forward: nothing crosses between this network's VMs and another VM namespace (either way);
 *   with `egress: deny`, nothing leaves them for anywhere but one another, except replies;
 * - input: its VMs reach the host itself only with replies to what the host asked (their gateway,
 *   DHCP server and pings are answered in their own namespaces);
 * - postrouting: with `egress: allow`, what leaves the host from the block is masqueraded.
 */
export function networkRuleset(rules: NetworkRules): string {
  const { table, cidr, egress, vms } = rules;
  const elements = vms.length > 0 ? ` elements = { ${vms.map((name) => `"${name}"`).join(', ')} };` : '';
  return wholeTable(table, [
    `  set vms { type ifname;${elements} }`,
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    '    iifname @vms oifname "nxv-*" oifname != @vms drop',
    '    oifname @vms iifname "nxv-*" iifname != @vms drop',
    ...(egress === 'deny' ? ['    iifname @vms oifname != @vms ct state established,related accept', '    iifname @vms oifname != @vms drop'] : []),
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    '    iifname @vms ct state established,related accept',
    '    iifname @vms drop',
    '  }',
    ...(egress === 'allow'
      ? ['  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;', `    ip saddr ${cidr} oifname != @vms masquerade`, '  }']
      : []),
  ]);
}

/** What the rules inside one VM's namespace are made from. */
export interface VmNetnsRules {
  /** The table (family inet) in the namespace. */
  table: string;
  /** The TAP the guest is on, and the veth to the host, inside the namespace. */
  tap: string;
  veth: string;
  /** The address the guest has: the one it booted with, frozen in a snapshot's memory. */
  guestIp: string;
  /** The address the fleet knows the VM by (IPAM's). The same as `guestIp` but for a clone. */
  ip: string;
}

/**
 * The rules inside a VM's namespace, written whole like a network's:
 * - forward: only the guest's own address leaves it (no spoofing another VM), and whatever the
 *   host routes in reaches the guest;
 * - input: the guest reaches its namespace for DHCP and a ping of its gateway, nothing else;
 * - NAT, when the guest's address is not its fleet address (a clone of a snapshot): the one is
 *   translated to the other both ways at the veth, so the clone is reached, and answers, at its own.
 */
export function vmNetnsRuleset(rules: VmNetnsRules): string {
  const { table, tap, veth, guestIp, ip } = rules;
  const nat = guestIp !== ip;
  return wholeTable(table, [
    '  chain forward {',
    '    type filter hook forward priority filter; policy drop;',
    `    iifname "${tap}" oifname "${veth}" ip saddr ${guestIp} accept`,
    `    iifname "${veth}" oifname "${tap}" ip daddr ${guestIp} accept`,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname "${tap}" udp dport 67 accept`,
    `    iifname "${tap}" icmp type echo-request accept`,
    `    iifname "${tap}" drop`,
    '  }',
    ...(nat
      ? [
          '  chain prerouting {',
          '    type nat hook prerouting priority dstnat; policy accept;',
          `    iifname "${veth}" ip daddr ${ip} dnat ip to ${guestIp}`,
          '  }',
          '  chain postrouting {',
          '    type nat hook postrouting priority srcnat; policy accept;',
          `    oifname "${veth}" ip saddr ${guestIp} snat ip to ${ip}`,
          '  }',
        ]
      : []),
  ]);
}

/** What a VM's published ports on its host are made from. */
export interface PublishRules {
  /** The table (family inet) on the host: one per VM. */
  table: string;
  /** The host end of the VM's veth, and the VM's address. */
  veth: string;
  ip: string;
  ports: ReadonlyArray<{ host_port: number; guest_port: number; protocol: 'tcp' | 'udp' }>;
}

/**
 * The rules that publish a VM's ports on its host, written whole: what comes in for a host port on
 * any of the host's own addresses, from outside (prerouting) or from the host itself (output), is
 * sent to the VM's address and guest port. A client on the host's loopback is masqueraded as it
 * leaves for the VM (whose answer could not go back to 127.0.0.1), which the veth allows with
 * `route_localnet`.
 */
export function publishRuleset(rules: PublishRules): string {
  const { table, veth, ip, ports } = rules;
  const dnat = ports.map((port) => `    fib daddr type local ${port.protocol} dport ${port.host_port} dnat ip to ${ip}:${port.guest_port}`);
  return wholeTable(table, [
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...dnat,
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...dnat,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname "${veth}" ip saddr 127.0.0.0/8 masquerade`,
    '  }',
  ]);
}
