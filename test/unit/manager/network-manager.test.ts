import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NetworkManager } from '../../../src/manager/app/network-manager.js';
import type { Principal } from '../../../src/manager/domain/access-policy.js';
import { ManualClock, MemoryVmRepo, TEST_NETWORK_POOL } from '../../doubles/memory-manager.js';
import { rejectsWith } from '../../support/rejects-with.js';

const admin: Principal = { tokenId: 'token-admin', owner: 'root', role: 'admin', project: null };
const operator: Principal = { tokenId: 'token-op', owner: 'alice', role: 'operator', project: 'default' };
const otherOperator: Principal = { tokenId: 'token-other', owner: 'bob', role: 'operator', project: 'other' };

function setup() {
  const vms = new MemoryVmRepo(new ManualClock(), ['default', 'other']);
  return { vms, networks: new NetworkManager(vms.networks, TEST_NETWORK_POOL) };
}

/** A VM in `project` with a NIC on `networkId`, straight into the store (as VmManager.create would). */
async function vmOn(vms: MemoryVmRepo, name: string, networkId: string, project = 'default', ip?: string) {
  return vms.create(
    {
      project,
      name,
      desiredState: 'running',
      tags: {},
      expiresAt: null,
      nics: [{ networkId, ...(ip ? { ip } : {}) }],
      spec: { vcpu: 1, mem_mib: 128, kernel_path: '/k', initrd_path: null, boot_args: '', rootfs_path: '/r', extra_drives: [], nic: true },
    },
    () => undefined,
  );
}

describe('NetworkManager', () => {
  it("creates a network in the caller's project, its gateway the block's first address, egress allowed unless said", async () => {
    const { networks } = setup();
    const made = await networks.create({ name: 'backend', cidr: '10.1.0.0/24', dns: ['10.1.0.53'] }, operator);
    assert.equal(made.project, 'default');
    assert.equal(made.cidr, '10.1.0.0/24');
    assert.equal(made.gateway, '10.1.0.1');
    assert.equal(made.egress, 'allow');
    assert.deepEqual(made.dns, ['10.1.0.53']);
    assert.equal(made.vm_count, 0);
    assert.deepEqual(await networks.get(made.id, operator), made, 'GET answers what POST did');
  });

  it('refuses a malformed or unmanageable block before storing anything', async () => {
    const { networks } = setup();
    await rejectsWith(networks.create({ name: 'a', cidr: '10.1.0.1/24' }, operator), 'validation_failed', /host bits/);
    await rejectsWith(networks.create({ name: 'a', cidr: '10.0.0.0/8' }, operator), 'validation_failed', /too large/);
    await rejectsWith(networks.create({ name: 'a', cidr: '10.1.0.0/31' }, operator), 'validation_failed', /too small/);
    assert.deepEqual(await networks.list({}, admin), [], 'nothing was stored');
  });

  it('refuses a block overlapping another network: named in the same project, not named across projects', async () => {
    const { networks } = setup();
    await networks.create({ name: 'backend', cidr: '10.1.0.0/16' }, operator);
    await rejectsWith(networks.create({ name: 'front', cidr: '10.1.8.0/24' }, operator), 'conflict', /overlaps network backend \(10\.1\.0\.0\/16\)/);
    const across = await rejectsWith(
      networks.create({ name: 'theirs', cidr: '10.1.0.0/24' }, otherOperator),
      'conflict',
      /overlaps a network of another project/,
    );
    assert.doesNotMatch(across.message, /backend/, "another project's network is not named");
    await rejectsWith(networks.create({ name: 'backend', cidr: '10.2.0.0/24' }, operator), 'conflict', /already exists/);
  });

  it('hides other projects: their networks are 404s, lists show only the caller’s (an admin sees all)', async () => {
    const { networks } = setup();
    const mine = await networks.create({ name: 'mine', cidr: '10.1.0.0/24' }, operator);
    const theirs = await networks.create({ name: 'theirs', cidr: '10.2.0.0/24' }, otherOperator);
    await rejectsWith(networks.get(theirs.id, operator), 'not_found', /no network/);
    await rejectsWith(networks.update(theirs.id, { egress: 'deny' }, operator), 'not_found', /no network/);
    await rejectsWith(networks.delete(theirs.id, operator), 'not_found', /no network/);
    await rejectsWith(networks.create({ name: 'x', project: 'other', cidr: '10.3.0.0/24' }, operator), 'not_found', /no project other/);
    assert.deepEqual(
      (await networks.list({}, operator)).map((n) => n.name),
      ['mine'],
    );
    assert.deepEqual(
      (await networks.list({ project: 'other' }, operator)).map((n) => n.name),
      [],
      "asking for another project's shows nothing",
    );
    assert.deepEqual((await networks.list({}, admin)).map((n) => n.name).sort(), ['mine', 'theirs']);
    assert.equal((await networks.get(mine.id, admin)).id, mine.id);
  });

  it('changes egress and DNS, bumping the version; the block stays', async () => {
    const { networks } = setup();
    const made = await networks.create({ name: 'backend', cidr: '10.1.0.0/24' }, operator);
    const changed = await networks.update(made.id, { egress: 'deny', dns: ['1.1.1.1'] }, operator);
    assert.equal(changed.egress, 'deny');
    assert.deepEqual(changed.dns, ['1.1.1.1']);
    assert.equal(changed.cidr, '10.1.0.0/24');
    assert.equal(changed.resource_version, made.resource_version + 1);
  });

  it('refuses to change the egress of a network VMs are on (DNS may change); once they are gone it may', async () => {
    const { networks, vms } = setup();
    const made = await networks.create({ name: 'backend', cidr: '10.1.0.0/24' }, operator);
    const vm = await vmOn(vms, 'web', made.id);
    await rejectsWith(networks.update(made.id, { egress: 'deny' }, operator), 'conflict', /network backend has 1 VMs: its egress cannot change/);
    assert.deepEqual((await networks.update(made.id, { dns: ['10.1.0.53'], egress: 'allow' }, operator)).dns, ['10.1.0.53'], 'DNS, and the same egress, may');
    await vms.delete(vm.id);
    assert.equal((await networks.update(made.id, { egress: 'deny' }, operator)).egress, 'deny');
  });

  it('refuses to delete a network VMs have addresses in, naming them; deletes it once they are gone', async () => {
    const { networks, vms } = setup();
    const made = await networks.create({ name: 'backend', cidr: '10.1.0.0/24' }, operator);
    const web = await vmOn(vms, 'web', made.id);
    await vmOn(vms, 'db', made.id);
    await rejectsWith(networks.delete(made.id, operator), 'conflict', /network backend is in use by VMs db, web/);
    assert.equal((await networks.get(made.id, operator)).vm_count, 2);
    await vms.delete(web.id);
    await rejectsWith(networks.delete(made.id, operator), 'conflict', /in use by VMs db$/);
    await vms.delete((await vms.list({ limit: 10 }))[0]?.id ?? '');
    await networks.delete(made.id, operator);
    await rejectsWith(networks.get(made.id, operator), 'not_found', /no network/);
  });

  it("resolves a new VM's NICs: the default network when none is named (made once), by name or id otherwise", async () => {
    const { networks } = setup();
    const first = await networks.nicRequests('default', undefined, undefined);
    const second = await networks.nicRequests('default', undefined, true);
    assert.equal(first.length, 1);
    assert.deepEqual(second, first, 'one default network per project');
    const made = await networks.list({}, admin);
    assert.deepEqual(
      made.map((n) => [n.name, n.cidr]),
      [['default', '10.220.0.0/24']],
      'the first free block of the pool',
    );
    await networks.nicRequests('other', undefined, undefined);
    assert.deepEqual(
      (await networks.list({ project: 'other' }, admin)).map((n) => n.cidr),
      ['10.220.1.0/24'],
      "each project's default has a block of its own",
    );
    const backend = await networks.create({ name: 'backend', cidr: '10.1.0.0/24' }, operator);
    assert.deepEqual(await networks.nicRequests('default', [{ network: 'backend', ip: '10.1.0.9' }], undefined), [{ networkId: backend.id, ip: '10.1.0.9' }]);
    assert.deepEqual(await networks.nicRequests('default', [{ network: backend.id }], undefined), [{ networkId: backend.id }]);
    assert.deepEqual(await networks.nicRequests('default', undefined, false), [], 'nic: false asks for none');
    assert.deepEqual(await networks.nicRequests('default', [], undefined), [], 'an empty list asks for none');
  });

  it("refuses NICs on an unknown network, another project's, one named twice, or networks with nic: false", async () => {
    const { networks } = setup();
    const theirs = await networks.create({ name: 'theirs', cidr: '10.2.0.0/24' }, otherOperator);
    await networks.create({ name: 'backend', cidr: '10.1.0.0/24' }, operator);
    await rejectsWith(networks.nicRequests('default', [{ network: 'nope' }], undefined), 'not_found', /networks\[0\]: no network nope in project default/);
    await rejectsWith(networks.nicRequests('default', [{ network: theirs.id }], undefined), 'not_found', /no network .* in project default/);
    await rejectsWith(networks.nicRequests('default', [{ network: 'backend' }, { network: 'backend' }], undefined), 'validation_failed', /named twice/);
    await rejectsWith(networks.nicRequests('default', [{ network: 'backend' }], false), 'validation_failed', /nic: false/);
  });
});
