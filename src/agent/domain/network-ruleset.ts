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

/*
 * The same rules for iptables, on hosts without nftables. iptables has no sets and no tables of
 * one's own: a network's rules are chains named from its id (`NXN-<8 hex>-…`) with a rule per veth,
 * reached by one jump each from the built-in chains; a chain of ours only ever drops or returns,
 * never accepts, since an ACCEPT would end the built-in chain and skip every other network's jump.
 * Scripts are for `iptables-restore --noflush`: declaring a chain of ours creates or empties it, so
 * a script rewrites our chains whole, in one commit per table, and leaves everything else alone.
 */

/** An iptables rule in a built-in chain that sends packets to one of ours: added once, removed with our chains. */
export interface IptablesJump {
  table: 'filter' | 'nat';
  /** The built-in chain, e.g. FORWARD. */
  chain: string;
  /** The rule's match and target, e.g. ['-j', 'NXN-0a1b2c3d-FWD']. */
  rule: readonly string[];
}

/** Chains of ours, and how packets reach them: what a script fills, and what removing them takes. */
export interface IptablesRules {
  /** Input for `iptables-restore --noflush`. */
  script: string;
  jumps: readonly IptablesJump[];
  chains: { readonly filter: readonly string[]; readonly nat: readonly string[] };
}

/** The prefix of a network's chains, `NXN-<8 hex>`, from its table's key. */
export function networkChainPrefix(key: string): string {
  return `NXN-${key}`;
}

/** The prefix of a VM's published-port chains, `NXP-<8 hex>`. */
export function publishChainPrefix(key: string): string {
  return `NXP-${key}`;
}

/** A network's chains and jumps: its key's `NXN-<key>-FWD/FROM/TO/IN` (filter) and `-NAT` (nat). */
export function networkChains(key: string): Omit<IptablesRules, 'script'> {
  const prefix = networkChainPrefix(key);
  return {
    chains: { filter: [`${prefix}-FWD`, `${prefix}-FROM`, `${prefix}-TO`, `${prefix}-IN`], nat: [`${prefix}-NAT`] },
    jumps: [
      { table: 'filter', chain: 'FORWARD', rule: ['-j', `${prefix}-FWD`] },
      { table: 'filter', chain: 'INPUT', rule: ['-j', `${prefix}-IN`] },
      { table: 'nat', chain: 'POSTROUTING', rule: ['-j', `${prefix}-NAT`] },
    ],
  };
}

/**
 * A network's rules as iptables chains, the same as {@link networkRuleset}'s: `FWD` sends what
 * comes from one of its veths to `FROM` and what goes to one to `TO`; `FROM` lets it reach the
 * network's own veths, drops it toward any other VM namespace and, with `egress: deny`, anywhere
 * else but replies; `TO` drops what comes from another VM namespace; `IN` lets guests reach the
 * host only with replies; `NAT` masquerades what leaves the block for outside (egress allow).
 */
export function networkIptables(key: string, rules: Omit<NetworkRules, 'table'>): IptablesRules {
  const { cidr, egress, vms } = rules;
  const { chains, jumps } = networkChains(key);
  const [fwd, from, to, input] = chains.filter;
  const [nat] = chains.nat;
  const filter = [
    ...vms.flatMap((vm) => [`-A ${fwd} -i ${vm} -j ${from}`, `-A ${fwd} -o ${vm} -j ${to}`]),
    ...vms.map((vm) => `-A ${from} -o ${vm} -j RETURN`),
    `-A ${from} -o nxv-+ -j DROP`,
    ...(egress === 'deny' ? [`-A ${from} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN`, `-A ${from} -j DROP`] : []),
    ...vms.map((vm) => `-A ${to} -i ${vm} -j RETURN`),
    `-A ${to} -i nxv-+ -j DROP`,
    ...vms.flatMap((vm) => [`-A ${input} -i ${vm} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN`, `-A ${input} -i ${vm} -j DROP`]),
  ];
  const masquerade = egress === 'allow' ? [...vms.map((vm) => `-A ${nat} -o ${vm} -j RETURN`), `-A ${nat} -s ${cidr} -j MASQUERADE`] : [];
  return { script: restoreScript({ filter: [chains.filter, filter], nat: [chains.nat, masquerade] }), chains, jumps };
}

/** A VM's published-port chains and jumps: `NXP-<key>-DNAT` from PREROUTING and OUTPUT for the host's own addresses, `-MASQ` from POSTROUTING. */
export function publishChains(key: string): Omit<IptablesRules, 'script'> {
  const prefix = publishChainPrefix(key);
  const local = ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', `${prefix}-DNAT`];
  return {
    chains: { filter: [], nat: [`${prefix}-DNAT`, `${prefix}-MASQ`] },
    jumps: [
      { table: 'nat', chain: 'PREROUTING', rule: local },
      { table: 'nat', chain: 'OUTPUT', rule: local },
      { table: 'nat', chain: 'POSTROUTING', rule: ['-j', `${prefix}-MASQ`] },
    ],
  };
}

/** A VM's published ports as iptables chains, the same as {@link publishRuleset}'s. */
export function publishIptables(key: string, rules: Omit<PublishRules, 'table'>): IptablesRules {
  const { veth, ip, ports } = rules;
  const { chains, jumps } = publishChains(key);
  const [dnat, masq] = chains.nat;
  const nat = [
    ...ports.map((port) => `-A ${dnat} -p ${port.protocol} --dport ${port.host_port} -j DNAT --to-destination ${ip}:${port.guest_port}`),
    `-A ${masq} -o ${veth} -s 127.0.0.0/8 -j MASQUERADE`,
  ];
  return { script: restoreScript({ filter: [[], []], nat: [chains.nat, nat] }), chains, jumps };
}

/**
 * The rules inside a VM's namespace as a whole `iptables-restore` script (the namespace is the VM's
 * alone, so its built-in chains are ours), the same as {@link vmNetnsRuleset}'s.
 */
export function vmNetnsIptables(rules: Omit<VmNetnsRules, 'table'>): string {
  const { tap, veth, guestIp, ip } = rules;
  const lines = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    `-A FORWARD -i ${tap} -o ${veth} -s ${guestIp}/32 -j ACCEPT`,
    `-A FORWARD -i ${veth} -o ${tap} -d ${guestIp}/32 -j ACCEPT`,
    `-A INPUT -i ${tap} -p udp --dport 67 -j ACCEPT`,
    `-A INPUT -i ${tap} -p icmp --icmp-type echo-request -j ACCEPT`,
    `-A INPUT -i ${tap} -j DROP`,
    'COMMIT',
    ...(guestIp !== ip
      ? [
          '*nat',
          ':PREROUTING ACCEPT [0:0]',
          ':INPUT ACCEPT [0:0]',
          ':OUTPUT ACCEPT [0:0]',
          ':POSTROUTING ACCEPT [0:0]',
          `-A PREROUTING -i ${veth} -d ${ip}/32 -j DNAT --to-destination ${guestIp}`,
          `-A POSTROUTING -o ${veth} -s ${guestIp}/32 -j SNAT --to-source ${ip}`,
          'COMMIT',
        ]
      : []),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * A script that deletes, one by one, the rules of our chains naming `device` as their in or out
 * interface, as `iptables-save` shows them (`saved`, per table): it takes a VM's veth out of its
 * network's chains without knowing the network's block or egress, and without rewriting the rules
 * of other veths (another agent on the host may be writing them). Nothing when no rule names it.
 */
export function iptablesDeletions(saved: { filter: string; nat: string }, chains: IptablesRules['chains'], device: string): string {
  const names = new RegExp(`(^| )-[io] ${device.replace(/[^\w-]/g, '\\$&')}( |$)`);
  const deletions = (text: string, ours: readonly string[]) =>
    text
      .split('\n')
      .filter((line) => ours.some((chain) => line.startsWith(`-A ${chain} `)) && names.test(line))
      .map((line) => `-D${line.slice('-A'.length)}`);
  const lines = (['filter', 'nat'] as const).flatMap((table) => {
    const found = deletions(saved[table], chains[table]);
    return found.length > 0 ? [`*${table}`, ...found, 'COMMIT'] : [];
  });
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/**
 * Whether `jump` comes before every rule of the built-in chain that is not a jump to a chain of
 * ours, in the chain as `iptables -S <chain>` lists it: a rule of someone else's above it (an
 * ACCEPT that Docker's restart put first) would let packets past our chains.
 */
export function jumpLeads(listed: string, jump: IptablesJump): boolean {
  const rules = listed.split('\n').filter((line) => line.startsWith(`-A ${jump.chain} `));
  const ours = `-A ${jump.chain} ${jump.rule.join(' ')}`;
  const at = rules.indexOf(ours);
  return at >= 0 && rules.slice(0, at).every((line) => / -j NX[NP]-[0-9a-f]{8}-\S+$/.test(line));
}

/** An `iptables-restore --noflush` script: per table, our chains declared (made, or emptied) and their rules; a table with no chain of ours is left out. */
function restoreScript(tables: Record<'filter' | 'nat', [chains: readonly string[], rules: readonly string[]]>): string {
  const lines = Object.entries(tables).flatMap(([table, [chains, rules]]) =>
    chains.length > 0 ? [`*${table}`, ...chains.map((chain) => `:${chain} - [0:0]`), ...rules, 'COMMIT'] : [],
  );
  return `${lines.join('\n')}\n`;
}
