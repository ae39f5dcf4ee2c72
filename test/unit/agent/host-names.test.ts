import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TAP_NAME_PATTERN, VM_NETNS_PATTERN, macOf, nicDeviceOf, tapNameOf, tapPlacementOf, vmNetnsNameOf } from '../../../src/contracts/host-names.js';
import { isUnderAllowedRoot } from '../../../src/agent/domain/path-policy.js';
import { networkOf, parseIpv4Cidr } from '../../../src/agent/domain/ipv4.js';
import { vmLayout } from '../../../src/contracts/vm-layout.js';

const ID = '3f2a91c4-7b1e-4d2a-9c3b-0123456789ab';

describe('host resource names', () => {
  it('names the TAP from the id, within 15 characters', () => {
    assert.equal(tapNameOf(ID), 'tap-3f2a91c4');
    assert.ok(tapNameOf(ID).length <= 15);
    assert.match(tapNameOf(ID), TAP_NAME_PATTERN);
  });
  it("names a VM's namespace and its veth's host end alike from the id, within 15 characters", () => {
    assert.equal(vmNetnsNameOf(ID), 'nxv-3f2a91c4');
    assert.match(vmNetnsNameOf(ID), VM_NETNS_PATTERN);
    assert.equal(nicDeviceOf(ID, true), 'nxv-3f2a91c4', 'on a network: the veth');
    assert.equal(nicDeviceOf(ID, false), 'tap-3f2a91c4', 'on the flat bridge: the TAP');
  });
  it("puts a VM on a network's TAP, always tap0, in its namespace, where the VMM starts", () => {
    assert.deepEqual(tapPlacementOf(ID, true), { tap: 'tap0', netns: '/run/netns/nxv-3f2a91c4' });
    assert.deepEqual(tapPlacementOf(ID, false), { tap: 'tap-3f2a91c4' });
  });
  it('derives a locally administered unicast MAC from the id, the same every time', () => {
    assert.equal(macOf(ID), '06:3f:2a:91:c4:7b');
    assert.equal(parseInt(macOf(ID).slice(0, 2), 16) & 0b11, 0b10);
    assert.notEqual(macOf('4f2a91c4-7b1e-4d2a-9c3b-0123456789ab'), macOf(ID));
  });
});

describe('path policy', () => {
  const roots = ['/srv/fc/images', `/srv/fc/vms/${ID}`];
  it('allows paths inside the roots only', () => {
    assert.ok(isUnderAllowedRoot('/srv/fc/images/default/vmlinux', roots));
    assert.ok(isUnderAllowedRoot(`/srv/fc/vms/${ID}/drives/rootfs.img`, roots));
    assert.ok(!isUnderAllowedRoot('/srv/fc/images', roots), 'the root itself is not a file in it');
    assert.ok(!isUnderAllowedRoot('/srv/fc/images-evil/vmlinux', roots), 'a sibling with the same prefix');
    assert.ok(!isUnderAllowedRoot('/etc/shadow', roots));
    assert.ok(!isUnderAllowedRoot('/srv/fc/vms/other/drives/x', roots), "another VM's folder");
  });
});

describe('IPv4 CIDR', () => {
  it('parses and finds the network', () => {
    assert.deepEqual(parseIpv4Cidr('172.31.0.1/24'), { address: '172.31.0.1', prefixLength: 24 });
    assert.equal(networkOf({ address: '172.31.0.1', prefixLength: 24 }), '172.31.0.0/24');
    assert.equal(networkOf({ address: '10.1.2.3', prefixLength: 16 }), '10.1.0.0/16');
    for (const bad of ['172.31.0.1', '300.1.1.1/24', '1.2.3.4/31', '1.2.3.4/4', 'a.b.c.d/24']) assert.equal(parseIpv4Cidr(bad), undefined, bad);
  });
});

describe('VM layout', () => {
  it('puts everything under <run-dir>/vms/<id>', () => {
    const layout = vmLayout('/srv/fc/', ID);
    assert.equal(layout.dir, `/srv/fc/vms/${ID}`);
    assert.equal(layout.qmpSocket, `/srv/fc/vms/${ID}/sock/qmp.sock`);
    assert.equal(layout.pidFile, `/srv/fc/vms/${ID}/pid`);
  });
  it('refuses ids that could escape the folder', () => {
    for (const bad of ['../etc', 'a/b', '', `${ID}/..`]) assert.throws(() => vmLayout('/srv/fc', bad));
  });
});
