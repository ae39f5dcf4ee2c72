import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  iptablesDeletions,
  jumpLeads,
  networkChains,
  networkIptables,
  networkRuleset,
  publishIptables,
  publishRuleset,
  vmNetnsIptables,
  vmNetnsRuleset,
} from '../../../src/agent/domain/network-ruleset.js';

const rules = (egress: 'allow' | 'deny', vms: string[] = ['nxv-0a0a0a0a', 'nxv-0b0b0b0b']) =>
  networkRuleset({ table: 'nexus_net_0a1b2c3d', cidr: '10.1.0.0/24', egress, vms });

/** The rule lines of one chain of the script. */
function chain(script: string, name: string): string[] {
  const lines = script.split('\n');
  const start = lines.indexOf(`  chain ${name} {`);
  if (start < 0) return [];
  const end = lines.indexOf('  }', start);
  return lines.slice(start + 2, end).map((line) => line.trim());
}

describe("a network's nftables rules on a host", () => {
  it('replace the table whole, in one transaction: declared, deleted, written', () => {
    const lines = rules('allow').split('\n');
    assert.deepEqual(lines.slice(0, 3), ['table inet nexus_net_0a1b2c3d {}', 'delete table inet nexus_net_0a1b2c3d', 'table inet nexus_net_0a1b2c3d {']);
  });

  it("hold the network's veths on the host in one set (empty: no elements)", () => {
    assert.ok(rules('allow').includes('  set vms { type ifname; elements = { "nxv-0a0a0a0a", "nxv-0b0b0b0b" }; }'), 'both veths');
    assert.ok(rules('allow', []).includes('  set vms { type ifname; }'), 'an empty set');
  });

  it('drop whatever crosses between the network and any other VM namespace, both ways', () => {
    for (const egress of ['allow', 'deny'] as const) {
      const forward = chain(rules(egress), 'forward');
      assert.ok(forward.includes('iifname @vms oifname "nxv-*" oifname != @vms drop'), `${egress}: out to other networks is dropped`);
      assert.ok(forward.includes('oifname @vms iifname "nxv-*" iifname != @vms drop'), `${egress}: in from other networks is dropped`);
    }
  });

  it('with egress allow, masquerade what leaves; with deny, drop all that leaves but replies, and no NAT', () => {
    assert.deepEqual(chain(rules('allow'), 'postrouting'), ['ip saddr 10.1.0.0/24 oifname != @vms masquerade']);
    assert.equal(chain(rules('allow'), 'forward').length, 2, 'allow adds nothing to forward but isolation');
    assert.deepEqual(chain(rules('deny'), 'postrouting'), [], 'deny has no NAT');
    assert.deepEqual(chain(rules('deny'), 'forward').slice(2), [
      'iifname @vms oifname != @vms ct state established,related accept',
      'iifname @vms oifname != @vms drop',
    ]);
  });

  it('let guests reach the host itself only with replies', () => {
    assert.deepEqual(chain(rules('allow'), 'input'), ['iifname @vms ct state established,related accept', 'iifname @vms drop']);
  });
});

describe("the rules inside a VM's namespace", () => {
  const netns = (guestIp: string) => vmNetnsRuleset({ table: 'nexus_vm', tap: 'tap0', veth: 'veth0', guestIp, ip: '10.1.0.9' });

  it('let only the guest’s own address out, and what the host routes in reach it', () => {
    assert.deepEqual(chain(netns('10.1.0.9'), 'forward'), [
      'iifname "tap0" oifname "veth0" ip saddr 10.1.0.9 accept',
      'iifname "veth0" oifname "tap0" ip daddr 10.1.0.9 accept',
    ]);
    assert.match(netns('10.1.0.9'), /type filter hook forward priority filter; policy drop;/, 'anything else forwarded is dropped');
  });

  it('let the guest reach its namespace for DHCP and a ping, nothing else', () => {
    assert.deepEqual(chain(netns('10.1.0.9'), 'input'), [
      'iifname "tap0" udp dport 67 accept',
      'iifname "tap0" icmp type echo-request accept',
      'iifname "tap0" drop',
    ]);
  });

  it('translate nothing when the guest has its own address, and both ways for a clone with a frozen one', () => {
    assert.deepEqual([chain(netns('10.1.0.9'), 'prerouting'), chain(netns('10.1.0.9'), 'postrouting')], [[], []], 'no NAT');
    const clone = netns('10.1.0.5');
    assert.deepEqual(chain(clone, 'prerouting'), ['iifname "veth0" ip daddr 10.1.0.9 dnat ip to 10.1.0.5']);
    assert.deepEqual(chain(clone, 'postrouting'), ['oifname "veth0" ip saddr 10.1.0.5 snat ip to 10.1.0.9']);
    assert.deepEqual(chain(clone, 'forward')[0], 'iifname "tap0" oifname "veth0" ip saddr 10.1.0.5 accept', 'the frozen address leaves');
  });
});

describe("the rules publishing a VM's ports on its host", () => {
  const rules = publishRuleset({
    table: 'nexus_pub_0a0a0a0a',
    veth: 'nxv-0a0a0a0a',
    ip: '10.1.0.9',
    ports: [
      { host_port: 8080, guest_port: 80, protocol: 'tcp' },
      { host_port: 5353, guest_port: 53, protocol: 'udp' },
    ],
  });
  const dnat = ['fib daddr type local tcp dport 8080 dnat ip to 10.1.0.9:80', 'fib daddr type local udp dport 5353 dnat ip to 10.1.0.9:53'];

  it("send what comes for a host port on the host's own addresses to the guest, from outside and from the host itself", () => {
    assert.deepEqual(chain(rules, 'prerouting'), dnat, 'from outside');
    assert.deepEqual(chain(rules, 'output'), dnat, 'from the host');
  });

  it("masquerade clients on the host's loopback as they leave for the VM, and replace the table whole", () => {
    assert.deepEqual(chain(rules, 'postrouting'), ['oifname "nxv-0a0a0a0a" ip saddr 127.0.0.0/8 masquerade']);
    assert.deepEqual(rules.split('\n').slice(0, 2), ['table inet nexus_pub_0a0a0a0a {}', 'delete table inet nexus_pub_0a0a0a0a']);
  });
});

/** The lines of one table of an `iptables-restore` script: its chains declared, then its rules. */
function tableOf(script: string, table: 'filter' | 'nat'): string[] {
  const lines = script.split('\n');
  const start = lines.indexOf(`*${table}`);
  if (start < 0) return [];
  return lines.slice(start + 1, lines.indexOf('COMMIT', start));
}

describe("a network's iptables chains on a host (no nftables)", () => {
  const vms = ['nxv-0a0a0a0a', 'nxv-0b0b0b0b'];
  const script = (egress: 'allow' | 'deny', members = vms) => networkIptables('0a1b2c3d', { cidr: '10.1.0.0/24', egress, vms: members }).script;
  const rulesOf = (lines: string[], chain: string) => lines.filter((line) => line.startsWith(`-A ${chain} `)).map((line) => line.slice(`-A ${chain} `.length));

  it('declare its chains (made, or emptied) in each table and rewrite them whole, touching no chain of anyone else', () => {
    const filter = tableOf(script('allow'), 'filter');
    assert.deepEqual(
      filter.filter((line) => line.startsWith(':')),
      [':NXN-0a1b2c3d-FWD - [0:0]', ':NXN-0a1b2c3d-FROM - [0:0]', ':NXN-0a1b2c3d-TO - [0:0]', ':NXN-0a1b2c3d-IN - [0:0]'],
    );
    assert.deepEqual(
      tableOf(script('allow'), 'nat').filter((line) => line.startsWith(':')),
      [':NXN-0a1b2c3d-NAT - [0:0]'],
    );
    const all = script('deny')
      .split('\n')
      .filter((line) => line.startsWith('-'));
    assert.ok(all.length > 0 && all.every((line) => line.startsWith('-A NXN-0a1b2c3d-')), 'rules only in its own chains');
  });

  it('never accept, so a packet meets every network’s chains: only RETURN and DROP', () => {
    for (const egress of ['allow', 'deny'] as const) {
      const targets = script(egress)
        .split('\n')
        .flatMap((line) => /-j (\S+)/.exec(line)?.[1] ?? []);
      assert.ok(!targets.includes('ACCEPT'), `${egress}: ${targets.join(' ')}`);
    }
  });

  it("send a veth's traffic to FROM and TO; let it reach the network's own veths and drop it toward any other VM namespace, both ways", () => {
    const filter = tableOf(script('allow'), 'filter');
    assert.deepEqual(rulesOf(filter, 'NXN-0a1b2c3d-FWD'), [
      '-i nxv-0a0a0a0a -j NXN-0a1b2c3d-FROM',
      '-o nxv-0a0a0a0a -j NXN-0a1b2c3d-TO',
      '-i nxv-0b0b0b0b -j NXN-0a1b2c3d-FROM',
      '-o nxv-0b0b0b0b -j NXN-0a1b2c3d-TO',
    ]);
    assert.deepEqual(rulesOf(filter, 'NXN-0a1b2c3d-FROM'), ['-o nxv-0a0a0a0a -j RETURN', '-o nxv-0b0b0b0b -j RETURN', '-o nxv-+ -j DROP']);
    assert.deepEqual(rulesOf(filter, 'NXN-0a1b2c3d-TO'), ['-i nxv-0a0a0a0a -j RETURN', '-i nxv-0b0b0b0b -j RETURN', '-i nxv-+ -j DROP']);
  });

  it('with egress deny, drop all that leaves but replies, and no NAT; with allow, masquerade what leaves for outside', () => {
    assert.deepEqual(rulesOf(tableOf(script('deny'), 'filter'), 'NXN-0a1b2c3d-FROM').slice(3), [
      '-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN',
      '-j DROP',
    ]);
    assert.deepEqual(rulesOf(tableOf(script('deny'), 'nat'), 'NXN-0a1b2c3d-NAT'), [], 'deny: no NAT');
    assert.deepEqual(rulesOf(tableOf(script('allow'), 'nat'), 'NXN-0a1b2c3d-NAT'), [
      '-o nxv-0a0a0a0a -j RETURN',
      '-o nxv-0b0b0b0b -j RETURN',
      '-s 10.1.0.0/24 -j MASQUERADE',
    ]);
  });

  it('let guests reach the host itself only with replies', () => {
    assert.deepEqual(rulesOf(tableOf(script('allow', ['nxv-0a0a0a0a']), 'filter'), 'NXN-0a1b2c3d-IN'), [
      '-i nxv-0a0a0a0a -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN',
      '-i nxv-0a0a0a0a -j DROP',
    ]);
  });

  it('are reached by one jump each from FORWARD, INPUT and nat POSTROUTING', () => {
    assert.deepEqual(networkChains('0a1b2c3d').jumps, [
      { table: 'filter', chain: 'FORWARD', rule: ['-j', 'NXN-0a1b2c3d-FWD'] },
      { table: 'filter', chain: 'INPUT', rule: ['-j', 'NXN-0a1b2c3d-IN'] },
      { table: 'nat', chain: 'POSTROUTING', rule: ['-j', 'NXN-0a1b2c3d-NAT'] },
    ]);
  });

  it("take one veth out by deleting the rules of its chains that name it, one by one, and nobody else's", () => {
    const saved = {
      filter: [
        '*filter',
        ':FORWARD ACCEPT [0:0]',
        ':NXN-0a1b2c3d-FROM - [0:0]',
        '-A FORWARD -j NXN-0a1b2c3d-FWD',
        '-A FORWARD -i nxv-0a0a0a0a -j ACCEPT',
        '-A NXN-0a1b2c3d-FROM -o nxv-0a0a0a0a -j RETURN',
        '-A NXN-0a1b2c3d-FROM -o nxv-0a0a0a0a1 -j RETURN',
        '-A NXN-0a1b2c3d-FROM -o nxv-0b0b0b0b -j RETURN',
        '-A NXN-0a1b2c3d-FROM -o nxv-+ -j DROP',
        '-A NXN-0a1b2c3d-IN -i nxv-0a0a0a0a -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
        'COMMIT',
      ].join('\n'),
      nat: '',
    };
    const chains = networkChains('0a1b2c3d').chains;
    assert.deepEqual(iptablesDeletions(saved, chains, 'nxv-0a0a0a0a').split('\n'), [
      '*filter',
      '-D NXN-0a1b2c3d-FROM -o nxv-0a0a0a0a -j RETURN',
      '-D NXN-0a1b2c3d-IN -i nxv-0a0a0a0a -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
      'COMMIT',
      '',
    ]);
    assert.equal(iptablesDeletions(saved, chains, 'nxv-0c0c0c0c'), '', 'nothing names it: nothing to do');
  });

  it('keep their jumps ahead of every rule of anyone else’s in the built-in chain', () => {
    const jump = networkChains('0a1b2c3d').jumps[0];
    assert.ok(jump, 'the FORWARD jump');
    const chain = (...rules: string[]) => ['-P FORWARD DROP', ...rules.map((rule) => `-A FORWARD ${rule}`)].join('\n');
    assert.ok(jumpLeads(chain('-j NXN-0a1b2c3d-FWD', '-j DOCKER-USER'), jump), 'first');
    assert.ok(jumpLeads(chain('-j NXN-0f0f0f0f-FWD', '-j NXN-0a1b2c3d-FWD', '-j DOCKER-USER'), jump), 'after another network’s jump');
    assert.ok(!jumpLeads(chain('-j DOCKER-USER', '-j NXN-0a1b2c3d-FWD'), jump), 'under a rule of Docker’s');
    assert.ok(!jumpLeads(chain('-j DOCKER-USER'), jump), 'missing');
  });
});

describe('the iptables rules inside a VM namespace, and for its published ports', () => {
  it('inside: the same policy as nftables, the built-in chains written whole; NAT only for a clone', () => {
    const own = vmNetnsIptables({ tap: 'tap0', veth: 'veth0', guestIp: '10.1.0.9', ip: '10.1.0.9' });
    assert.deepEqual(tableOf(own, 'filter'), [
      ':INPUT ACCEPT [0:0]',
      ':FORWARD DROP [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      '-A FORWARD -i tap0 -o veth0 -s 10.1.0.9/32 -j ACCEPT',
      '-A FORWARD -i veth0 -o tap0 -d 10.1.0.9/32 -j ACCEPT',
      '-A INPUT -i tap0 -p udp --dport 67 -j ACCEPT',
      '-A INPUT -i tap0 -p icmp --icmp-type echo-request -j ACCEPT',
      '-A INPUT -i tap0 -j DROP',
    ]);
    assert.deepEqual(tableOf(own, 'nat'), [], 'no NAT');
    const clone = tableOf(vmNetnsIptables({ tap: 'tap0', veth: 'veth0', guestIp: '10.1.0.5', ip: '10.1.0.9' }), 'nat');
    assert.deepEqual(clone.slice(4), [
      '-A PREROUTING -i veth0 -d 10.1.0.9/32 -j DNAT --to-destination 10.1.0.5',
      '-A POSTROUTING -o veth0 -s 10.1.0.5/32 -j SNAT --to-source 10.1.0.9',
    ]);
  });

  it('ports: DNAT for the host’s own addresses from outside and from the host, loopback clients masqueraded', () => {
    const { script, jumps } = publishIptables('0a0a0a0a', {
      veth: 'nxv-0a0a0a0a',
      ip: '10.1.0.9',
      ports: [
        { host_port: 8080, guest_port: 80, protocol: 'tcp' },
        { host_port: 5353, guest_port: 53, protocol: 'udp' },
      ],
    });
    assert.deepEqual(tableOf(script, 'nat'), [
      ':NXP-0a0a0a0a-DNAT - [0:0]',
      ':NXP-0a0a0a0a-MASQ - [0:0]',
      '-A NXP-0a0a0a0a-DNAT -p tcp --dport 8080 -j DNAT --to-destination 10.1.0.9:80',
      '-A NXP-0a0a0a0a-DNAT -p udp --dport 5353 -j DNAT --to-destination 10.1.0.9:53',
      '-A NXP-0a0a0a0a-MASQ -o nxv-0a0a0a0a -s 127.0.0.0/8 -j MASQUERADE',
    ]);
    assert.deepEqual(tableOf(script, 'filter'), [], 'nothing in filter');
    const local = ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'NXP-0a0a0a0a-DNAT'];
    assert.deepEqual(jumps, [
      { table: 'nat', chain: 'PREROUTING', rule: local },
      { table: 'nat', chain: 'OUTPUT', rule: local },
      { table: 'nat', chain: 'POSTROUTING', rule: ['-j', 'NXP-0a0a0a0a-MASQ'] },
    ]);
  });
});
