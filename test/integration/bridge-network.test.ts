import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { tapNameOf } from '../../src/contracts/host-names.js';
import { parseIpv4Cidr } from '../../src/agent/domain/ipv4.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { BridgeNetwork } from '../../src/agent/host/net/bridge-network.js';
import { ensureMasquerade, removeMasquerade } from '../../src/agent/host/net/nat.js';
import { captureLogger } from '../support/capture-logger.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../support/net-names.js';

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

describe('bridge network (real bridge, TAPs and NAT)', () => {
  const bridge = testBridgeName();
  const cidr = parseIpv4Cidr(testBridgeCidr());
  assert.ok(cidr);
  const network = new BridgeNetwork({ bridge, cidr, nat: true }, captureLogger().log);
  const foreign: string[] = [];

  after(async () => {
    for (const tap of await network.listTaps()) if ((await readLink(tap))?.master === bridge) await network.deleteTap(tap);
    for (const device of foreign) ip('link', 'del', 'dev', device);
    await network.removeBridge();
  });

  it('creates the bridge with its address and NAT on first use, and a TAP attached to it', async () => {
    const tap = tapNameOf(testVmId());
    await network.ensureTap(tap);
    const bridgeLink = await readLink(bridge);
    assert.equal(bridgeLink?.linkinfo?.info_kind, 'bridge');
    assert.ok(bridgeLink?.addr_info?.some((entry) => entry.local === cidr.address && entry.prefixlen === cidr.prefixLength));
    const tapLink = await readLink(tap);
    assert.equal(tapLink?.linkinfo?.info_kind, 'tun');
    assert.equal(tapLink?.master, bridge);
    assert.match(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }), new RegExp(`nexus_${bridge}`));

    // Idempotent: again, and the TAP is recreated, still attached.
    await network.ensureTap(tap);
    assert.equal((await readLink(tap))?.master, bridge);
    assert.ok((await network.listTaps()).includes(tap));

    await network.deleteTap(tap);
    assert.equal(await readLink(tap), undefined);
    await network.deleteTap(tap); // deleting what is gone succeeds
  });

  it('never touches a foreign device that carries a TAP name', async () => {
    const name = tapNameOf(testVmId());
    ip('link', 'add', name, 'type', 'bridge');
    foreign.push(name);
    await assert.rejects(network.ensureTap(name), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'conflict');
      assert.match(error.message, /bridge device named .* was not made by Nexus/);
      return true;
    });
    await assert.rejects(network.deleteTap(name), /not made by Nexus/);
    assert.equal((await readLink(name))?.linkinfo?.info_kind, 'bridge', 'still there, untouched');
  });

  it('refuses names that are not Nexus TAP names', async () => {
    for (const bad of ['eth0', 'tap-xyz', 'tap-3f2a91c4-extra', 'fcbr0']) {
      await assert.rejects(network.ensureTap(bad), (error: Error & { code?: string }) => error.code === 'bad_request');
    }
  });

  it('adds the iptables masquerade rule once, however often it is ensured, and removes it', async () => {
    const subnet = `${cidr.address.split('.').slice(0, 3).join('.')}.0/24`;
    const rules = () => execFileSync('iptables', ['-t', 'nat', '-S', 'POSTROUTING'], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(`nexus:${bridge}`));
    // iptables-nft makes the `ip nat` table on first use: if this test made it, this test removes it.
    const natTableBefore = /table ip nat\b/.test(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }));
    try {
      await ensureMasquerade('iptables', bridge, subnet);
      await ensureMasquerade('iptables', bridge, subnet);
      assert.equal(rules().length, 1);
      assert.match(rules()[0] ?? '', new RegExp(`-s ${subnet.replaceAll('.', '\\.')} ! -o ${bridge} .*-j MASQUERADE`));
    } finally {
      await removeMasquerade('iptables', bridge, subnet);
    }
    assert.deepEqual(rules(), []);
    if (!natTableBefore) execFileSync('nft', ['delete', 'table', 'ip', 'nat']);
  });

  it('refuses a bridge name taken by a device that is not a bridge', async () => {
    const taken = testBridgeName();
    ip('tuntap', 'add', 'dev', taken, 'mode', 'tap');
    foreign.push(taken);
    const other = new BridgeNetwork({ bridge: taken, cidr, nat: false }, captureLogger().log);
    await assert.rejects(other.ensureBridge(), /exists and is not a bridge \(tun\)/);
  });
});
