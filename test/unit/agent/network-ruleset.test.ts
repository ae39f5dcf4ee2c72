import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { networkRuleset, publishRuleset, vmNetnsRuleset } from '../../../src/agent/domain/network-ruleset.js';

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
