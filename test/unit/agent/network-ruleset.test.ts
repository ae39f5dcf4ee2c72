import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { networkRuleset } from '../../../src/agent/domain/network-ruleset.js';

const rules = (egress: 'allow' | 'deny') =>
  networkRuleset({ table: 'nexus_net_0a1b2c3d', bridge: 'nxb-0a1b2c3d', cidr: '10.1.0.0/24', gateway: '10.1.0.1', egress });

/** The rule lines of one chain of the script. */
function chain(script: string, name: string): string[] {
  const lines = script.split('\n');
  const start = lines.indexOf(`  chain ${name} {`);
  if (start < 0) return [];
  const end = lines.indexOf('  }', start);
  return lines.slice(start + 2, end).map((line) => line.trim());
}

describe("a network's nftables rules", () => {
  it('replace the table whole, in one transaction: declared, deleted, written', () => {
    const lines = rules('allow').split('\n');
    assert.deepEqual(lines.slice(0, 3), ['table inet nexus_net_0a1b2c3d {}', 'delete table inet nexus_net_0a1b2c3d', 'table inet nexus_net_0a1b2c3d {']);
  });

  it('drop whatever crosses between the network and any other Nexus network, both ways', () => {
    for (const egress of ['allow', 'deny'] as const) {
      const forward = chain(rules(egress), 'forward');
      assert.ok(forward.includes('iifname "nxb-0a1b2c3d" oifname "nxb-*" oifname != "nxb-0a1b2c3d" drop'), `${egress}: out to other networks is dropped`);
      assert.ok(forward.includes('oifname "nxb-0a1b2c3d" iifname "nxb-*" iifname != "nxb-0a1b2c3d" drop'), `${egress}: in from other networks is dropped`);
    }
  });

  it('with egress allow, masquerade what leaves; with deny, drop all that leaves but replies, and no NAT', () => {
    assert.deepEqual(chain(rules('allow'), 'postrouting'), ['ip saddr 10.1.0.0/24 oifname != "nxb-0a1b2c3d" masquerade']);
    assert.equal(chain(rules('allow'), 'forward').length, 2, 'allow adds nothing to forward but isolation');
    assert.deepEqual(chain(rules('deny'), 'postrouting'), [], 'deny has no NAT');
    assert.deepEqual(chain(rules('deny'), 'forward').slice(2), [
      'iifname "nxb-0a1b2c3d" oifname != "nxb-0a1b2c3d" ct state established,related accept',
      'iifname "nxb-0a1b2c3d" oifname != "nxb-0a1b2c3d" drop',
    ]);
  });

  it('let guests reach the host only for DHCP, a ping of the gateway, and replies', () => {
    assert.deepEqual(chain(rules('allow'), 'input'), [
      'iifname "nxb-0a1b2c3d" ct state established,related accept',
      'iifname "nxb-0a1b2c3d" udp dport 67 accept',
      'iifname "nxb-0a1b2c3d" ip daddr 10.1.0.1 icmp type echo-request accept',
      'iifname "nxb-0a1b2c3d" drop',
    ]);
  });
});
