import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { SnapshotManager } from '../../../src/manager/app/snapshot-manager.js';
import { ImageRegistry } from '../../../src/manager/app/image-registry.js';
import { NetworkManager } from '../../../src/manager/app/network-manager.js';
import { VmManager } from '../../../src/manager/app/vm-manager.js';
import type { Principal } from '../../../src/manager/domain/access-policy.js';
import { VmReconciler } from '../../../src/manager/reconcilers/vm-reconciler.js';
import type { StoredVmSpec } from '../../../src/manager/ports/vm-repo.js';
import { captureLogger } from '../../support/capture-logger.js';
import {
  FakeAgentGateway,
  IdSequence,
  ManualClock,
  MemoryHostRepo,
  MemoryImageRepo,
  MemorySnapshotRepo,
  MemoryVmRepo,
  TEST_NETWORK_POOL,
  alwaysLeader,
  hostRecord,
} from '../../doubles/memory-manager.js';
import { rejectsWith } from '../../support/rejects-with.js';

const HOST = hostRecord({ capacity: { drivers: [{ name: 'qemu', available: true, version: 'test' }] } });
const operator: Principal = { tokenId: 'token-op', owner: 'alice', role: 'operator', project: 'default' };
const otherOperator: Principal = { tokenId: 'token-other', owner: 'bob', role: 'operator', project: 'other' };
const admin: Principal = { tokenId: 'token-admin', owner: 'root', role: 'admin', project: null };

/**
 * Snapshots over in-memory ports: VMs made running by the reconciler on a fake agent (so the
 * agent has them, as it would), a snapshot manager beside it, the VMs it woke recorded.
 */
function setup() {
  const clock = new ManualClock();
  const vms = new MemoryVmRepo(clock, ['default', 'other']);
  const hosts = new MemoryHostRepo([HOST]);
  const images = new MemoryImageRepo();
  const kernel = images.put({ name: 'default', kind: 'kernel' }, { [HOST.id]: '/srv/fc/images/vmlinux' });
  const rootfs = images.put({ name: 'default', kind: 'rootfs' }, { [HOST.id]: '/srv/fc/images/rootfs.ext4' });
  const agents = new FakeAgentGateway();
  const reconciler = new VmReconciler(
    vms,
    hosts,
    images,
    agents,
    clock,
    captureLogger('reconciler').log,
    { resyncMs: 15_000, vcpuOvercommit: 4, startRetryBudget: 3, pollMs: 100 },
    alwaysLeader,
  );
  const snapshotRepo = new MemorySnapshotRepo(clock);
  const woken: string[] = [];
  const ids = new IdSequence('5a5a');
  const snapshots = new SnapshotManager(
    snapshotRepo,
    vms,
    hosts,
    agents,
    (vmId) => woken.push(vmId),
    captureLogger('snapshots').log,
    () => ids.take(),
  );
  const spec: StoredVmSpec = {
    vcpu: 1,
    mem_mib: 128,
    kernel_path: null,
    kernel_image_id: kernel.id,
    initrd_path: null,
    boot_args: 'console=ttyS0',
    rootfs_path: null,
    rootfs_image_id: rootfs.id,
    extra_drives: [],
    nic: false,
  };
  const networks = new NetworkManager(vms.networks, TEST_NETWORK_POOL);
  const vmManager = new VmManager(
    vms,
    hosts,
    new ImageRegistry(images, clock, captureLogger('images').log),
    networks,
    snapshots,
    () => () => undefined,
    (vmId) => woken.push(vmId),
    clock,
    { mode: 'production' },
  );
  /** Reconciles the VM until it asks to be looked at later. */
  const settle = async (id: string) => {
    for (let pass = 0; pass < 10; pass++) {
      const result = await reconciler.reconcile(id);
      if (!result || result.requeueAfterMs > 0) return;
    }
  };
  /** A VM of `project`, reconciled until it is `desired`; `nic`: on the project's default network, or on the host's flat bridge. */
  const vmIn = async (name: string, desired: 'running' | 'paused' | 'stopped' = 'running', project = 'default', nic: boolean | 'flat' = false) => {
    const nics = nic === true ? [{ networkId: (await vms.networks.ensureDefault(project, TEST_NETWORK_POOL)).id }] : [];
    const vm = await vms.create(
      { project, name, spec: { ...spec, nic: nic !== false }, desiredState: 'running', tags: {}, expiresAt: null, nics },
      () => undefined,
    );
    for (const want of desired === 'running' ? ['running' as const] : ['running' as const, desired]) {
      await vms.setDesired(vm.id, want);
      for (let pass = 0; pass < 10; pass++) {
        const result = await reconciler.reconcile(vm.id);
        if (!result || result.requeueAfterMs > 0) break;
      }
    }
    const placed = await vms.get(vm.id);
    assert.equal(placed?.observedState, desired, `the VM is ${desired} before the test goes on`);
    return vm;
  };
  return { clock, vms, hosts, agents, snapshotRepo, snapshots, vmManager, woken, vmIn, settle };
}

describe('SnapshotManager.create', () => {
  it('captures a running VM on its host and answers the snapshot, ready, with its files; the VM runs on', async () => {
    const { snapshots, agents, vms, woken, vmIn } = setup();
    const vm = await vmIn('web');
    const snapshot = await snapshots.create(vm.id, {}, operator);
    assert.equal(snapshot.status, 'ready', 'answered once whole');
    assert.equal(snapshot.vm_id, vm.id);
    assert.equal(snapshot.vm_name, 'web');
    assert.equal(snapshot.host_id, HOST.id);
    assert.equal(snapshot.project, 'default');
    assert.equal(snapshot.name, `web-${snapshot.id.slice(0, 8)}`, 'named after its VM unless a name is given');
    assert.equal(snapshot.driver, 'qemu');
    assert.ok(snapshot.size_bytes > 128 * 1024 * 1024, 'its size is what the host reported');
    assert.deepEqual(
      snapshot.files.map((file) => file.kind),
      ['state'],
      'the files the host wrote',
    );
    assert.deepEqual(agents.snapshotsOn(HOST.id), [snapshot.id], 'the host keeps it under the manager id');
    assert.equal(agents.vm(HOST.id, vm.id)?.state, 'running', 'the VM runs on');
    assert.equal((await vms.get(vm.id))?.desiredState, 'running');
    assert.deepEqual(woken, [], 'nothing changed for the reconciler');
  });

  it('with resume: false, wants the VM stopped before its host is asked, and wakes the reconciler', async () => {
    const { snapshots, agents, vms, woken, vmIn } = setup();
    const vm = await vmIn('web');
    const desiredWhenAsked: string[] = [];
    const take = agents.takeSnapshot.bind(agents);
    agents.takeSnapshot = async (target, vmId, request) => {
      desiredWhenAsked.push((await vms.get(vmId))?.desiredState ?? 'gone');
      return take(target, vmId, request);
    };
    await snapshots.create(vm.id, { name: 'cold', resume: false }, operator);
    assert.deepEqual(desiredWhenAsked, ['stopped'], 'the reconciler would not start it again meanwhile');
    assert.equal(agents.vm(HOST.id, vm.id)?.state, 'stopped', 'the host stopped it once captured');
    assert.equal((await vms.get(vm.id))?.desiredState, 'stopped');
    assert.deepEqual(woken, [vm.id]);
  });

  it('captures a paused VM', async () => {
    const { snapshots, vmIn } = setup();
    const vm = await vmIn('sleepy', 'paused');
    assert.equal((await snapshots.create(vm.id, {}, operator)).status, 'ready', 'a paused VM has memory to capture');
  });

  it('refuses a stopped VM with a 409 and writes nothing', async () => {
    const { snapshots, agents, snapshotRepo, vmIn } = setup();
    const vm = await vmIn('off', 'stopped');
    await rejectsWith(snapshots.create(vm.id, {}, operator), 'conflict', /off is stopped: only a running or paused VM is snapshotted/);
    assert.equal(agents.calls.takeSnapshot, 0, 'its host was not asked');
    assert.deepEqual(await snapshotRepo.ids(), [], 'no row');
  });

  it('answers 404 for a VM of another project, and for none', async () => {
    const { snapshots, agents, vmIn } = setup();
    const vm = await vmIn('web');
    await rejectsWith(snapshots.create(vm.id, {}, otherOperator), 'not_found', /no VM/);
    await rejectsWith(snapshots.create('00000000-0000-4000-8000-000000000000', {}, operator), 'not_found', /no VM/);
    assert.equal(agents.calls.takeSnapshot, 0);
  });

  it('refuses a name taken in the project before its host is asked', async () => {
    const { snapshots, agents, vmIn } = setup();
    const vm = await vmIn('web');
    await snapshots.create(vm.id, { name: 'warm' }, operator);
    await rejectsWith(snapshots.create(vm.id, { name: 'warm' }, operator), 'conflict', /named warm already exists/);
    assert.equal(agents.calls.takeSnapshot, 1, 'only the first was taken');
  });

  it('leaves no row when the host fails the capture, and wants the VM as it was', async () => {
    const { snapshots, agents, snapshotRepo, vms, vmIn } = setup();
    const vm = await vmIn('web');
    agents.failNext('takeSnapshot', new NexusError('insufficient_storage', 'the disk of /srv/nexus/snapshots filled up'));
    await rejectsWith(snapshots.create(vm.id, { resume: false }, operator), 'insufficient_storage', /filled up/);
    assert.deepEqual(await snapshotRepo.ids(), [], 'the row went with the failure');
    assert.equal((await vms.get(vm.id))?.desiredState, 'running', 'it is wanted running again');
  });

  it('removes the files of a snapshot deleted while it was taken, and says so', async () => {
    const { snapshots, agents, snapshotRepo, vmIn } = setup();
    const vm = await vmIn('web');
    const take = agents.takeSnapshot.bind(agents);
    agents.takeSnapshot = async (target, vmId, request) => {
      const answer = await take(target, vmId, request);
      await snapshotRepo.deleteOfVm(vmId); // the VM deleted meanwhile
      return answer;
    };
    await rejectsWith(snapshots.create(vm.id, {}, operator), 'conflict', /was deleted while it was being taken/);
    assert.deepEqual(agents.snapshotsOn(HOST.id), [], 'no files left without a row');
  });
});

describe('SnapshotManager reads and deletes', () => {
  it('lists what the caller may see: by project, by VM; another project’s VM or snapshot is a 404', async () => {
    const { snapshots, vmIn } = setup();
    const mine = await vmIn('mine');
    const theirs = await vmIn('theirs', 'running', 'other');
    const a = await snapshots.create(mine.id, { name: 'a' }, operator);
    const b = await snapshots.create(theirs.id, { name: 'b' }, otherOperator);
    assert.deepEqual(
      (await snapshots.list({}, operator)).map((each) => each.name),
      ['a'],
    );
    assert.deepEqual((await snapshots.list({}, admin)).map((each) => each.name).sort(), ['a', 'b']);
    assert.deepEqual(await snapshots.list({ project: 'other' }, operator), [], 'another project lists empty');
    assert.deepEqual(
      (await snapshots.list({ vm_id: mine.id }, admin)).map((each) => each.id),
      [a.id],
    );
    assert.deepEqual(
      (await snapshots.listOfVm(mine.id, operator)).map((each) => each.id),
      [a.id],
    );
    await rejectsWith(snapshots.listOfVm(theirs.id, operator), 'not_found', /no VM/);
    await rejectsWith(snapshots.get(b.id, operator), 'not_found', /no snapshot/);
    await rejectsWith(snapshots.delete(b.id, operator), 'not_found', /no snapshot/);
    assert.equal((await snapshots.get(b.id, otherOperator)).name, 'b');
  });

  it('deletes the row and the files on its host; a host out of reach has them collected later', async () => {
    const { snapshots, agents, snapshotRepo, vmIn } = setup();
    const vm = await vmIn('web');
    const first = await snapshots.create(vm.id, { name: 'first' }, operator);
    const second = await snapshots.create(vm.id, { name: 'second' }, operator);
    await snapshots.delete(first.id, operator);
    assert.deepEqual(await snapshotRepo.ids(), [second.id]);
    assert.deepEqual(agents.snapshotsOn(HOST.id), [second.id], 'its files went with it');
    await rejectsWith(snapshots.delete(first.id, operator), 'not_found', /no snapshot/);

    agents.unreachable.add(HOST.id);
    await snapshots.delete(second.id, operator);
    assert.deepEqual(await snapshotRepo.ids(), [], 'the row goes at once');
    assert.deepEqual(agents.snapshotsOn(HOST.id), [second.id], 'the files wait for the orphan collector');
  });

  it('refuses to delete a snapshot being taken', async () => {
    const { snapshots, snapshotRepo, vmIn } = setup();
    const vm = await vmIn('web');
    const row = await snapshotRepo.create({
      id: '0000000a-5a5a-4000-8000-000000000000',
      project: 'default',
      name: 'busy',
      vmId: vm.id,
      vmName: vm.name,
      hostId: HOST.id,
      vcpu: 1,
      memMib: 128,
      source: { spec: vm.spec, placedPaths: {}, nics: [] },
    });
    await rejectsWith(snapshots.delete(row.id, operator), 'conflict', /being taken/);
  });

  it("deletes a VM's snapshots, rows and files, and no other's", async () => {
    const { snapshots, agents, snapshotRepo, vmIn } = setup();
    const doomed = await vmIn('doomed');
    const kept = await vmIn('kept');
    await snapshots.create(doomed.id, {}, operator);
    await snapshots.create(doomed.id, {}, operator);
    const other = await snapshots.create(kept.id, {}, operator);
    await snapshots.deleteOfVm(doomed.id);
    assert.deepEqual(await snapshotRepo.ids(), [other.id]);
    assert.deepEqual(agents.snapshotsOn(HOST.id), [other.id]);
  });
});

describe('VmManager.instantiate (a VM made from a snapshot, on fakes)', () => {
  it("makes a VM on the snapshot's host, on the same network at its own address, restored there and running", async () => {
    const { snapshots, vmManager, agents, vms, vmIn, settle } = setup();
    const source = await vmIn('web', 'running', 'default', true);
    const snapshot = await snapshots.create(source.id, { name: 'warm' }, operator);
    const clone = await vmManager.instantiate(snapshot.id, { name: 'web-2', tags: { role: 'clone' } }, operator);
    assert.equal(clone.host_id, HOST.id, 'placed where the snapshot is, as it is made');
    assert.equal(clone.snapshot_id, snapshot.id);
    assert.deepEqual(clone.tags, { role: 'clone' });
    const sourceVm = await vmManager.get(source.id, operator);
    assert.equal(clone.addresses[0]?.network_id, sourceVm.addresses[0]?.network_id, 'the same network');
    assert.notEqual(clone.addresses[0]?.ip, sourceVm.addresses[0]?.ip, 'an address of its own');
    assert.deepEqual(clone.ports, [], 'it publishes nothing: its host ports are the original’s');

    const ensures = agents.calls.ensureVm;
    await settle(clone.id);
    assert.equal(agents.calls.instantiateVm, 1, 'restored from the snapshot');
    assert.equal(agents.calls.ensureVm, ensures, 'not ensured to boot');
    assert.equal((await vms.get(clone.id))?.observedState, 'running');
    assert.ok((await vms.get(clone.id))?.status.startedAt, 'its start is recorded');
    assert.equal(agents.vm(HOST.id, clone.id)?.spec.nics[0]?.ip, clone.addresses[0]?.ip, 'the agent is asked for its own address');
    assert.equal(agents.vm(HOST.id, source.id)?.state, 'running', 'the original runs on');
  });

  it('refuses: a snapshot of another project or none (404), one being taken or whose host is gone (409), other networks than NICs (400)', async () => {
    const { snapshots, vmManager, snapshotRepo, hosts, vmIn } = setup();
    const source = await vmIn('web', 'running', 'default', true);
    const snapshot = await snapshots.create(source.id, {}, operator);
    await rejectsWith(vmManager.instantiate(snapshot.id, { name: 'x' }, otherOperator), 'not_found', /no snapshot/);
    await rejectsWith(vmManager.instantiate('00000000-0000-4000-8000-000000000000', { name: 'x' }, operator), 'not_found', /no snapshot/);
    await rejectsWith(vmManager.instantiate(snapshot.id, { name: 'x', networks: [] }, operator), 'validation_failed', /had 1 NICs/);
    const busy = await snapshotRepo.create({
      id: '0000000b-5a5a-4000-8000-000000000000',
      project: 'default',
      name: 'busy',
      vmId: source.id,
      vmName: 'web',
      hostId: HOST.id,
      vcpu: 1,
      memMib: 128,
      source: { spec: source.spec, placedPaths: {}, nics: [] },
    });
    await rejectsWith(vmManager.instantiate(busy.id, { name: 'x' }, operator), 'conflict', /being taken/);
    hosts.put({ ...HOST, status: 'unreachable' });
    await rejectsWith(vmManager.instantiate(snapshot.id, { name: 'x' }, operator), 'conflict', /kept on host .* which is unreachable/);
  });

  it('refuses a snapshot of a VM on the flat bridge: its clone would have no address of its own', async () => {
    const { snapshots, vmManager, vmIn } = setup();
    const source = await vmIn('flat', 'running', 'default', 'flat');
    const snapshot = await snapshots.create(source.id, {}, operator);
    await rejectsWith(vmManager.instantiate(snapshot.id, { name: 'x' }, operator), 'conflict', /on the host's flat bridge/);
  });

  it('fails the VM, saying why, when its host no longer has the snapshot', async () => {
    const { snapshots, vmManager, agents, vms, vmIn, settle } = setup();
    const source = await vmIn('web', 'running', 'default', true);
    const snapshot = await snapshots.create(source.id, {}, operator);
    const clone = await vmManager.instantiate(snapshot.id, { name: 'orphan' }, operator);
    await agents.deleteSnapshot({ hostId: HOST.id, hostName: HOST.name, address: HOST.address, credentialSealed: '' }, snapshot.id);
    await settle(clone.id);
    const failed = await vms.get(clone.id);
    assert.equal(failed?.observedState, 'failed');
    assert.match(failed?.lastError?.message ?? '', /no snapshot .* on this host/);
    assert.ok(
      (await vms.events(clone.id)).some((event) => /^restore failed: no snapshot/.test(event.message)),
      'its history says the restore failed',
    );
  });
});
