import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { vmNetnsNameOf } from '../../../src/contracts/host-names.js';
import { type CreateVmRequest, DEFAULT_BOOT_ARGS, type VmLifecycleAction } from '../../../src/contracts/vm-api.js';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { ImageRegistry } from '../../../src/manager/app/image-registry.js';
import { VmManager } from '../../../src/manager/app/vm-manager.js';
import { NetworkManager } from '../../../src/manager/app/network-manager.js';
import { type Principal, type ProjectQuota, brokenQuota } from '../../../src/manager/domain/access-policy.js';
import type { HostRecord } from '../../../src/manager/ports/host-repo.js';
import type { ObservedState } from '../../../src/contracts/vm-api.js';
import { captureLogger } from '../../support/capture-logger.js';
import { ManualClock, MemoryHostRepo, MemoryImageRepo, MemoryVmRepo, TEST_NETWORK_POOL, hostRecord } from '../../doubles/memory-manager.js';
import { rejectsWith } from '../../support/rejects-with.js';

const HOST = hostRecord({ id: '11111111-0000-4000-8000-000000000001', name: 'host-1', capacity: { memory_mib: 4096, run_dir: '/srv/fc' } });

const admin: Principal = { tokenId: 'token-admin', owner: 'root', role: 'admin', project: null };
const operator: Principal = { tokenId: 'token-op', owner: 'alice', role: 'operator', project: 'default' };
const viewer: Principal = { tokenId: 'token-viewer', owner: 'vera', role: 'viewer', project: 'default' };
const otherOperator: Principal = { tokenId: 'token-other', owner: 'bob', role: 'operator', project: 'other' };

/** A VmManager over in-memory ports: two projects, one ready host, a kernel and a rootfs image on it. */
function setup(options: { mode?: 'dev' | 'production'; hosts?: HostRecord[] } = {}) {
  const clock = new ManualClock();
  const vms = new MemoryVmRepo(clock, ['default', 'other']);
  const hosts = new MemoryHostRepo(options.hosts ?? [HOST]);
  const imageRepo = new MemoryImageRepo();
  const kernel = imageRepo.put({ name: 'default', kind: 'kernel', bootArgs: 'console=ttyS0 from-the-image' }, { [HOST.id]: '/srv/fc/images/vmlinux' });
  const plainKernel = imageRepo.put({ name: 'plain', kind: 'kernel' }, { [HOST.id]: '/srv/fc/images/plain-vmlinux' });
  const initrd = imageRepo.put({ name: 'default', kind: 'initrd' }, { [HOST.id]: '/srv/fc/images/initrd.cpio.gz' });
  const rootfs = imageRepo.put({ name: 'default', kind: 'rootfs' }, { [HOST.id]: '/srv/fc/images/rootfs.ext4' });
  const woken: Array<{ vmId: string; userAction: boolean }> = [];
  /** The VMs whose snapshots the manager deleted with them. */
  const snapshotsDeleted: string[] = [];
  const quotaAsked: Array<{ project: string; vcpu: number; memMib: number }> = [];
  // The quota rule AccessService gives the store, built on the same pure rule.
  const quotaCheck = (project: string, vcpu: number, memMib: number) => {
    quotaAsked.push({ project, vcpu, memMib });
    return (quota: ProjectQuota, usage: { vms: number; vcpus: number; memoryMib: number }) => {
      const broken = brokenQuota(quota, usage, vcpu, memMib);
      if (broken) throw new NexusError('quota_exceeded', `project ${project} is at its quota: ${broken}`);
    };
  };
  const manager = new VmManager(
    vms,
    hosts,
    new ImageRegistry(imageRepo, clock, captureLogger('images').log),
    new NetworkManager(vms.networks, TEST_NETWORK_POOL),
    { deleteOfVm: async (vmId: string) => void snapshotsDeleted.push(vmId), restorable: noSnapshots },
    quotaCheck,
    (vmId, userAction) => woken.push({ vmId, userAction }),
    clock,
    { mode: options.mode ?? 'production' },
  );
  /** A request for a VM from the images, with `overrides`. */
  const request = (name: string, overrides: Partial<CreateVmRequest> = {}): CreateVmRequest => ({
    name,
    vcpu: 1,
    mem_mib: 256,
    kernel_image_id: kernel.id,
    rootfs_image_id: rootfs.id,
    ...overrides,
  });
  /** Creates a VM as `caller` (the operator of `default` unless said) and moves its observed state to `state`. */
  const vmIn = async (state: ObservedState, name = `vm-${state}`, caller: Principal = operator) => {
    const vm = await manager.create(request(name), caller);
    await vms.observe(vm.id, { to: state, message: 'set by the test' });
    woken.length = 0;
    return vm;
  };
  return { clock, vms, hosts, manager, woken, snapshotsDeleted, quotaAsked, images: { kernel, plainKernel, initrd, rootfs }, request, vmIn };
}

describe('VmManager.create', () => {
  it('stores the spec as asked and answers the new VM', async () => {
    const { manager, vms, images, request } = setup();
    const vm = await manager.create(
      request('web-1', {
        vcpu: 2,
        mem_mib: 512,
        initrd_image_id: images.initrd.id,
        nic: false,
        tags: { env: 'test' },
        extra_drives: [{ id: 'data', image_id: images.rootfs.id, read_only: true }],
      }),
      operator,
    );
    const stored = await vms.get(vm.id);
    assert.ok(stored, 'the VM is stored');
    assert.equal(stored.project, 'default', "the caller's project, when the request names none");
    assert.equal(stored.name, 'web-1');
    assert.deepEqual(stored.tags, { env: 'test' });
    assert.deepEqual(stored.spec, {
      vcpu: 2,
      mem_mib: 512,
      kernel_path: null,
      kernel_image_id: images.kernel.id,
      initrd_path: null,
      initrd_image_id: images.initrd.id,
      boot_args: 'console=ttyS0 from-the-image',
      rootfs_path: null,
      rootfs_image_id: images.rootfs.id,
      extra_drives: [{ id: 'data', path: null, image_id: images.rootfs.id, read_only: true }],
      nic: false,
    });
    assert.equal(stored.observedState, 'requested', 'observing it is the reconciler’s job');
    assert.equal(vm.id, stored.id);
    assert.equal(vm.vcpu, 2);
    assert.equal(vm.mem_mib, 512);
    assert.equal(vm.nic, false);
    assert.equal(vm.tap, null, 'no NIC, no TAP');
    assert.deepEqual(vm.addresses, [], 'no NIC, no address');
    assert.equal(vm.state, 'requested');
  });

  it('boots with the boot_args asked for, else the kernel image’s, else the default', async () => {
    const { manager, vms, images, request } = setup();
    const asked = await manager.create(request('asked', { boot_args: 'console=ttyS0 quiet' }), operator);
    const fromImage = await manager.create(request('from-image'), operator);
    const fallback = await manager.create(request('fallback', { kernel_image_id: images.plainKernel.id }), operator);
    assert.equal((await vms.get(asked.id))?.spec.boot_args, 'console=ttyS0 quiet');
    assert.equal((await vms.get(fromImage.id))?.spec.boot_args, 'console=ttyS0 from-the-image');
    assert.equal((await vms.get(fallback.id))?.spec.boot_args, DEFAULT_BOOT_ARGS);
  });

  it('wants a new VM running unless it asks to stay stopped', async () => {
    const { manager, request } = setup();
    assert.equal((await manager.create(request('default-state'), operator)).desired_state, 'running');
    assert.equal((await manager.create(request('stays-stopped', { desired_state: 'stopped' }), operator)).desired_state, 'stopped');
  });

  it('gives a VM with a TTL an expiry that far from now, by the clock; one without none', async () => {
    const { manager, vms, clock, request } = setup();
    clock.advance(5000);
    const expected = new Date(clock.now().getTime() + 600_000);
    const ephemeral = await manager.create(request('ephemeral', { ttl_seconds: 600 }), operator);
    assert.equal(ephemeral.expires_at, expected.toISOString());
    assert.deepEqual((await vms.get(ephemeral.id))?.expiresAt, expected);
    assert.equal((await manager.create(request('lasting'), operator)).expires_at, null);
  });

  it('wakes the reconciler for the new VM, as a user’s action', async () => {
    const { manager, woken, request } = setup();
    const vm = await manager.create(request('woken'), operator);
    assert.deepEqual(woken, [{ vmId: vm.id, userAction: true }]);
  });

  it('refuses a VM past its project’s quota, checking it with the VM’s size, and stores nothing', async () => {
    const { manager, vms, woken, quotaAsked, request } = setup();
    vms.quotas.set('default', { maxVms: null, maxVcpus: 4, maxMemoryMib: null });
    await manager.create(request('two-cpus', { vcpu: 2 }), operator);
    assert.deepEqual(quotaAsked, [{ project: 'default', vcpu: 2, memMib: 256 }], 'the check is built for this project and size');
    woken.length = 0;
    await rejectsWith(manager.create(request('three-cpus', { vcpu: 3 }), operator), 'quota_exceeded', /max_vcpus 4/);
    assert.deepEqual(
      (await vms.list({ limit: 10 })).map((vm) => vm.name),
      ['two-cpus'],
      'the refused VM is not stored',
    );
    assert.deepEqual(woken, [], 'a refused VM wakes nothing');
    await manager.create(request('two-more', { vcpu: 2 }), operator);
  });

  it('refuses a name its project already has (409), and lets another project have it', async () => {
    const { manager, woken, request } = setup();
    await manager.create(request('taken'), operator);
    woken.length = 0;
    await rejectsWith(manager.create(request('taken'), operator), 'conflict', /taken/);
    assert.deepEqual(woken, [], 'a refused VM wakes nothing');
    const elsewhere = await manager.create(request('taken'), otherOperator);
    assert.equal(elsewhere.project, 'other');
  });

  it('refuses more memory than the largest ready host has (400), counting only ready hosts', async () => {
    const big = hostRecord({ id: '22222222-0000-4000-8000-000000000002', name: 'big', status: 'unreachable', capacity: { memory_mib: 65_536 } });
    const { manager, vms, request } = setup({ hosts: [HOST, big] });
    await rejectsWith(manager.create(request('too-big', { mem_mib: 4097 }), operator), 'validation_failed', /4096 MiB/);
    assert.deepEqual(await vms.list({ limit: 10 }), [], 'nothing is stored');
    await manager.create(request('fits', { mem_mib: 4096 }), operator);
  });

  it('takes any size while no host is ready: placement waits for one', async () => {
    const { manager, request } = setup({ hosts: [] });
    const vm = await manager.create(request('waits', { mem_mib: 65_536 }), operator);
    assert.equal(vm.mem_mib, 65_536);
  });

  it('refuses raw host paths in production (403), for every file', async () => {
    const { manager, vms, images, request } = setup({ mode: 'production' });
    await rejectsWith(manager.create(request('k', { kernel_image_id: undefined, kernel_path: '/boot/vmlinux' }), operator), 'forbidden', /kernel_path/);
    await rejectsWith(manager.create(request('i', { initrd_path: '/boot/initrd' }), operator), 'forbidden', /initrd_path/);
    await rejectsWith(manager.create(request('r', { rootfs_image_id: undefined, rootfs_path: '/disk.ext4' }), operator), 'forbidden', /rootfs_path/);
    await rejectsWith(manager.create(request('d', { extra_drives: [{ id: 'data', path: '/data.ext4' }] }), operator), 'forbidden', /extra_drives\[0\]\.path/);
    assert.deepEqual(await vms.list({ limit: 10 }), [], 'nothing is stored');
    await manager.create(request('d2', { extra_drives: [{ id: 'data', image_id: images.rootfs.id }] }), operator);
  });

  it('takes raw host paths in dev mode and stores them as given', async () => {
    const { manager, vms } = setup({ mode: 'dev' });
    const vm = await manager.create(
      {
        name: 'dev-vm',
        vcpu: 1,
        mem_mib: 256,
        kernel_path: '/boot/vmlinux',
        initrd_path: '/boot/initrd',
        rootfs_path: '/disk.ext4',
        extra_drives: [{ id: 'data', path: '/data.ext4' }],
      },
      operator,
    );
    const spec = (await vms.get(vm.id))?.spec;
    assert.equal(spec?.kernel_path, '/boot/vmlinux');
    assert.equal(spec?.kernel_image_id, null);
    assert.equal(spec?.initrd_path, '/boot/initrd');
    assert.equal(spec?.rootfs_path, '/disk.ext4');
    assert.deepEqual(spec?.extra_drives, [{ id: 'data', path: '/data.ext4', image_id: null, read_only: false }]);
    assert.equal(vm.kernel_path, '/boot/vmlinux', 'a path given is the path shown');
  });

  it('wants exactly one of path and image id for each file, in every mode (400)', async () => {
    const { manager, images, request } = setup({ mode: 'dev' });
    await rejectsWith(
      manager.create(request('both', { kernel_path: '/boot/vmlinux' }), operator),
      'validation_failed',
      /kernel_image_id or kernel_path, not both/,
    );
    await rejectsWith(manager.create(request('neither', { rootfs_image_id: undefined }), operator), 'validation_failed', /rootfs_image_id is required/);
    await rejectsWith(
      manager.create(request('drive-both', { extra_drives: [{ id: 'data', path: '/d.ext4', image_id: images.rootfs.id }] }), operator),
      'validation_failed',
      /extra_drives\[0\]\.image_id or extra_drives\[0\]\.path/,
    );
    const noInitrd = await manager.create(request('no-initrd'), operator);
    assert.equal(noInitrd.initrd_path, null, 'initrd is optional');
    assert.equal(noInitrd.initrd_image_id, null, 'initrd is optional');
  });

  it('checks each image id names an image of the kind its field wants', async () => {
    const { manager, images, request } = setup();
    await rejectsWith(
      manager.create(request('rootfs-as-kernel', { kernel_image_id: images.rootfs.id }), operator),
      'validation_failed',
      /kernel_image_id: .* not a kernel image/,
    );
    await rejectsWith(
      manager.create(request('kernel-as-initrd', { initrd_image_id: images.kernel.id }), operator),
      'validation_failed',
      /initrd_image_id: .* not a initrd image/,
    );
    await rejectsWith(
      manager.create(request('kernel-as-drive', { extra_drives: [{ id: 'data', image_id: images.kernel.id }] }), operator),
      'validation_failed',
      /extra_drives\[0\]\.image_id: .* not a rootfs image/,
    );
    await rejectsWith(
      manager.create(request('unknown', { rootfs_image_id: '99999999-0000-4000-8000-000000000000' }), operator),
      'not_found',
      /rootfs_image_id/,
    );
  });

  it('creates in the project asked; another project than the caller’s is a 404, an unknown one too', async () => {
    const { manager, request } = setup();
    await rejectsWith(manager.create(request('sneaky', { project: 'other' }), operator), 'not_found', /no project other/);
    assert.equal((await manager.create(request('by-admin', { project: 'other' }), admin)).project, 'other');
    assert.equal((await manager.create(request('admin-default'), admin)).project, 'default', 'an admin token without project creates in default');
    await rejectsWith(manager.create(request('nowhere', { project: 'nowhere' }), admin), 'not_found', /no project nowhere/);
  });
});

describe('VmManager.create: addresses', () => {
  it("gives a VM one NIC on its project's default network, at the lowest free address, and shows it", async () => {
    const { manager, vms, request } = setup();
    const first = await manager.create(request('first'), operator);
    const second = await manager.create(request('second'), operator);
    const network = await vms.networks.byName('default', 'default');
    assert.ok(network, 'the default network was made on first use');
    assert.deepEqual(first.addresses, [
      { network_id: network.id, network: 'default', ip: '10.220.0.2', prefix_length: 24, gateway: '10.220.0.1', mac: first.addresses[0]?.mac ?? '' },
    ]);
    assert.match(first.addresses[0]?.mac ?? '', /^06(:[0-9a-f]{2}){5}$/, 'the MAC derived from the VM id');
    assert.equal(second.addresses[0]?.ip, '10.220.0.3', 'the next free address');
    assert.equal(first.nic, true);
    assert.deepEqual((await manager.get(first.id, operator)).addresses, first.addresses, 'GET shows the same');
  });

  it('puts a VM on the network it names, at the address it asks for', async () => {
    const { manager, vms, request } = setup();
    await vms.networks.create({ project: 'default', name: 'backend', cidr: '10.1.0.0/24', egress: 'deny', dns: [] });
    const vm = await manager.create(request('db', { networks: [{ network: 'backend', ip: '10.1.0.50' }] }), operator);
    assert.deepEqual(
      vm.addresses.map((address) => [address.network, address.ip, address.gateway]),
      [['backend', '10.1.0.50', '10.1.0.1']],
    );
    assert.equal(await vms.networks.byName('default', 'default'), undefined, 'no default network was made for it');
  });

  it('refuses an address that is taken (naming the holder) or outside the network, and stores no VM', async () => {
    const { manager, vms, request } = setup();
    await vms.networks.create({ project: 'default', name: 'backend', cidr: '10.1.0.0/24', egress: 'allow', dns: [] });
    await manager.create(request('holder', { networks: [{ network: 'backend', ip: '10.1.0.7' }] }), operator);
    await rejectsWith(manager.create(request('late', { networks: [{ network: 'backend', ip: '10.1.0.7' }] }), operator), 'conflict', /taken by VM holder/);
    await rejectsWith(
      manager.create(request('outside', { networks: [{ network: 'backend', ip: '10.9.0.7' }] }), operator),
      'unprocessable',
      /not in network backend/,
    );
    assert.deepEqual(
      (await vms.list({ limit: 10 })).map((vm) => vm.name),
      ['holder'],
      'the refused VMs were not stored',
    );
  });

  it('frees an address with its VM: the next VM gets it again', async () => {
    const { manager, vms, request } = setup();
    const gone = await manager.create(request('gone'), operator);
    await vms.delete(gone.id);
    assert.equal((await manager.create(request('next'), operator)).addresses[0]?.ip, gone.addresses[0]?.ip);
  });
});

describe('VmManager.act', () => {
  const cases: Array<{ action: VmLifecycleAction; from: ObservedState; desired: string }> = [
    { action: 'start', from: 'stopped', desired: 'running' },
    { action: 'stop', from: 'running', desired: 'stopped' },
    { action: 'pause', from: 'running', desired: 'paused' },
    { action: 'resume', from: 'paused', desired: 'running' },
  ];
  for (const { action, from, desired } of cases) {
    it(`${action} on a ${from} VM wants it ${desired}, bumps its version and wakes the reconciler`, async () => {
      const { manager, vms, woken, vmIn } = setup();
      const vm = await vmIn(from);
      if (action === 'start') await vms.setDesired(vm.id, 'stopped');
      if (action === 'resume') await vms.setDesired(vm.id, 'paused');
      const before = await vms.get(vm.id);
      await manager.act(vm.id, action, operator);
      const after = await vms.get(vm.id);
      assert.equal(after?.desiredState, desired);
      assert.equal(after?.resourceVersion, (before?.resourceVersion ?? 0) + 1, 'a user write bumps the version');
      assert.equal(after?.observedState, from, 'the observed state is the reconciler’s to change');
      assert.deepEqual(woken, [{ vmId: vm.id, userAction: true }]);
    });
  }

  it('refuses an action the VM’s state does not allow with a 409, changing nothing', async () => {
    const { manager, vms, woken, vmIn } = setup();
    const stopped = await vmIn('stopped');
    await vms.setDesired(stopped.id, 'stopped');
    const before = await vms.get(stopped.id);
    await rejectsWith(manager.act(stopped.id, 'pause', operator), 'conflict', /cannot pause a VM that is stopped \(state stopped, desired stopped\)/);
    await rejectsWith(manager.act(stopped.id, 'resume', operator), 'conflict', /cannot resume/);
    assert.deepEqual(await vms.get(stopped.id), before, 'the VM is untouched');
    assert.deepEqual(woken, []);
  });

  it('refuses every action on a VM being deleted with a 409', async () => {
    const { manager, woken, vmIn } = setup();
    const vm = await vmIn('running');
    await manager.delete(vm.id, operator);
    woken.length = 0;
    for (const action of ['start', 'stop', 'pause', 'resume'] as const) await rejectsWith(manager.act(vm.id, action, operator), 'conflict', /being deleted/);
    assert.deepEqual(woken, []);
  });

  it('with If-Match, acts only on the version the caller read (412 otherwise)', async () => {
    const { manager, vms, woken, vmIn } = setup();
    const vm = await vmIn('running');
    const read = (await vms.get(vm.id))?.resourceVersion ?? -1;
    await vms.setDesired(vm.id, 'paused'); // someone else wrote first
    await rejectsWith(manager.act(vm.id, 'stop', operator, read), 'precondition_failed', /If-Match/);
    assert.equal((await vms.get(vm.id))?.desiredState, 'paused', 'the stale write is not applied');
    assert.deepEqual(woken, []);
    await manager.act(vm.id, 'stop', operator, read + 1);
    assert.equal((await vms.get(vm.id))?.desiredState, 'stopped', 'the current version is applied');
  });

  it('answers 404 for an unknown VM and for another project’s', async () => {
    const { manager, vms, vmIn } = setup();
    const vm = await vmIn('running');
    await rejectsWith(manager.act('99999999-0000-4000-8000-000000000000', 'stop', operator), 'not_found');
    await rejectsWith(manager.act(vm.id, 'stop', otherOperator), 'not_found', /no VM/);
    assert.equal((await vms.get(vm.id))?.desiredState, 'running', "another project's caller changed nothing");
  });

  it('in bulk, answers for each VM on its own: one refusal does not stop the rest', async () => {
    const { manager, vms, vmIn } = setup();
    const stopped = await vmIn('stopped', 'stopped-vm');
    const running = await vmIn('running', 'running-vm');
    const results = await manager.bulk([stopped.id, running.id], 'pause', operator);
    assert.deepEqual(
      results.map(({ id, ok, error }) => ({ id, ok, error })),
      [
        { id: stopped.id, ok: false, error: 'conflict' },
        { id: running.id, ok: true, error: undefined },
      ],
    );
    assert.equal((await vms.get(running.id))?.desiredState, 'paused');
  });
});

describe('VmManager.delete', () => {
  it('wants the VM deleted, shows it deleting, records why and wakes the reconciler', async () => {
    const { manager, vms, woken, vmIn } = setup();
    const vm = await vmIn('running');
    const before = await vms.get(vm.id);
    await manager.delete(vm.id, operator);
    const after = await vms.get(vm.id);
    assert.equal(after?.desiredState, 'deleted');
    assert.equal(after?.observedState, 'deleting');
    assert.equal(after?.resourceVersion, (before?.resourceVersion ?? 0) + 1);
    assert.deepEqual((await vms.events(vm.id)).at(-1)?.message, 'deletion requested');
    assert.deepEqual(woken, [{ vmId: vm.id, userAction: true }]);
  });

  it("deletes the VM's snapshots with it, unless asked to keep them", async () => {
    const { manager, snapshotsDeleted, vmIn } = setup();
    const gone = await vmIn('running', 'gone');
    const keeper = await vmIn('running', 'keeper');
    await manager.delete(gone.id, operator);
    await manager.delete(keeper.id, operator, { keepSnapshots: true });
    assert.deepEqual(snapshotsDeleted, [gone.id], 'only the VM deleted without keep_snapshots has its snapshots deleted');
  });

  it('answers 404 for another project’s VM and leaves it alone', async () => {
    const { manager, vms, woken, snapshotsDeleted, vmIn } = setup();
    const vm = await vmIn('running');
    await rejectsWith(manager.delete(vm.id, otherOperator), 'not_found');
    assert.deepEqual(snapshotsDeleted, [], 'no snapshot of it is touched');
    assert.equal((await vms.get(vm.id))?.desiredState, 'running');
    assert.equal((await vms.get(vm.id))?.observedState, 'running');
    assert.deepEqual(woken, []);
  });

  it('with a stale If-Match, answers 412 and neither marks nor shows it deleting', async () => {
    const { manager, vms, woken, vmIn } = setup();
    const vm = await vmIn('running');
    const read = (await vms.get(vm.id))?.resourceVersion ?? -1;
    await vms.setDesired(vm.id, 'stopped');
    await rejectsWith(manager.delete(vm.id, operator, { ifMatch: read }), 'precondition_failed');
    assert.equal((await vms.get(vm.id))?.desiredState, 'stopped');
    assert.equal((await vms.get(vm.id))?.observedState, 'running');
    assert.deepEqual(woken, []);
  });
});

describe('VmManager reads, by project', () => {
  it('gets a VM for its project’s callers and admins; another project’s caller gets a 404', async () => {
    const { manager, vmIn } = setup();
    const vm = await vmIn('running');
    assert.equal((await manager.get(vm.id, operator)).id, vm.id);
    assert.equal((await manager.get(vm.id, viewer)).id, vm.id, 'a viewer reads');
    assert.equal((await manager.get(vm.id, admin)).id, vm.id);
    await rejectsWith(manager.get(vm.id, otherOperator), 'not_found', /no VM/);
    await rejectsWith(manager.get('99999999-0000-4000-8000-000000000000', admin), 'not_found');
  });

  it('lists only the caller’s project’s VMs (an admin’s: every project’s), in name order', async () => {
    const { manager, vmIn } = setup();
    await vmIn('running', 'b-default');
    await vmIn('stopped', 'a-default');
    await vmIn('running', 'c-other', otherOperator);
    const names = async (caller: Principal) => (await manager.list({}, caller)).items.map((vm) => vm.name);
    assert.deepEqual(await names(operator), ['a-default', 'b-default']);
    assert.deepEqual(await names(otherOperator), ['c-other']);
    assert.deepEqual(await names(admin), ['a-default', 'b-default', 'c-other']);
  });

  it('filters by state and name prefix, and pages with the cursor it gives', async () => {
    const { manager, vmIn } = setup();
    await vmIn('running', 'web-1');
    await vmIn('running', 'web-2');
    await vmIn('stopped', 'web-3');
    await vmIn('running', 'db-1');
    const names = (page: { items: Array<{ name: string }> }) => page.items.map((vm) => vm.name);
    assert.deepEqual(names(await manager.list({ state: 'running' }, operator)), ['db-1', 'web-1', 'web-2']);
    assert.deepEqual(names(await manager.list({ name_prefix: 'web-' }, operator)), ['web-1', 'web-2', 'web-3']);
    const first = await manager.list({ limit: 2 }, operator);
    assert.deepEqual(names(first), ['db-1', 'web-1']);
    assert.ok(first.next_cursor, 'a full page has a next cursor');
    const second = await manager.list({ limit: 2, cursor: first.next_cursor }, operator);
    assert.deepEqual(names(second), ['web-2', 'web-3']);
    const last = await manager.list({ limit: 2, cursor: second.next_cursor ?? undefined }, operator);
    assert.deepEqual(names(last), []);
    assert.equal(last.next_cursor, null, 'a short page is the last');
    await rejectsWith(manager.list({ cursor: 'not-a-cursor!' }, operator), 'validation_failed', /cursor/);
  });
});

describe('VmManager shows a VM', () => {
  it('with the paths placement recorded for its images, and the agent’s driver and files', async () => {
    const { manager, vms, images, request } = setup();
    const vm = await manager.create(request('placed', { initrd_image_id: images.initrd.id }), operator);
    await vms.setHost(vm.id, HOST.id, {
      [images.kernel.id]: '/srv/fc/images/vmlinux',
      [images.initrd.id]: '/srv/fc/images/initrd.cpio.gz',
      [images.rootfs.id]: '/srv/fc/images/rootfs.ext4',
    });
    await vms.setAgentView(vm.id, {
      driver: 'firecracker',
      apiSocket: `/srv/fc/vms/${vm.id}/sock/fc.sock`,
      consoleLog: `/srv/fc/vms/${vm.id}/logs/console.log`,
    });
    const shown = await manager.get(vm.id, operator);
    assert.equal(shown.host_id, HOST.id);
    assert.equal(shown.kernel_image_id, images.kernel.id);
    assert.equal(shown.kernel_path, '/srv/fc/images/vmlinux');
    assert.equal(shown.initrd_path, '/srv/fc/images/initrd.cpio.gz');
    assert.equal(shown.rootfs_path, '/srv/fc/images/rootfs.ext4');
    assert.equal(shown.driver, 'firecracker');
    assert.equal(shown.api_socket, `/srv/fc/vms/${vm.id}/sock/fc.sock`);
    assert.equal(shown.console_log, `/srv/fc/vms/${vm.id}/logs/console.log`);
    assert.equal(shown.tap, vmNetnsNameOf(vm.id), 'on its default network: the veth to its namespace');
    const listed = (await manager.list({}, operator)).items[0];
    assert.deepEqual(listed, shown, 'the list shows it as get does');
  });

  it('before placement and before the agent has said: no paths for images, no driver, no files', async () => {
    const { manager, request } = setup();
    const vm = await manager.create(request('unplaced'), operator);
    assert.equal(vm.host_id, null);
    assert.equal(vm.kernel_path, null);
    assert.equal(vm.rootfs_path, null);
    assert.equal(vm.driver, null);
    assert.equal(vm.api_socket, null);
    assert.equal(vm.console_log, null);
  });

  it('with its ids, version, times and error as stored', async () => {
    const { manager, vms, clock, request } = setup();
    const created = clock.now();
    const vm = await manager.create(request('stored'), operator);
    clock.advance(1000);
    await manager.act(vm.id, 'stop', operator);
    const lastError = { reason: 'vmm_failed', message: 'qemu exited', at: clock.now().toISOString() };
    await vms.observe(vm.id, { to: 'failed', message: 'it failed', lastError });
    const shown = await manager.get(vm.id, operator);
    assert.equal(shown.resource_version, 2);
    assert.equal(shown.created_at, created.toISOString());
    assert.equal(shown.updated_at, clock.now().toISOString());
    assert.equal(shown.state, 'failed');
    assert.equal(shown.desired_state, 'stopped');
    assert.deepEqual(shown.last_error, lastError);
  });
});

describe('VmManager: published ports', () => {
  it('keeps the ports (tcp unless said) and shows where each is reachable once placed', async () => {
    const { manager, vms, request } = setup();
    const vm = await manager.create(
      request('web', {
        ports: [
          { host_port: 8080, guest_port: 80 },
          { host_port: 5353, guest_port: 53, protocol: 'udp' },
        ],
      }),
      operator,
    );
    assert.deepEqual(
      vm.ports,
      [
        { host_port: 8080, guest_port: 80, protocol: 'tcp', reachable_at: null },
        { host_port: 5353, guest_port: 53, protocol: 'udp', reachable_at: null },
      ],
      'not placed: reachable nowhere yet',
    );
    assert.deepEqual(await vms.setHost(vm.id, HOST.id, {}), [], 'placed, its ports reserved');
    const shown = await manager.get(vm.id, operator);
    assert.deepEqual(
      shown.ports.map((port) => port.reachable_at),
      ['127.0.0.1:8080', '127.0.0.1:5353'],
      "at the host's address",
    );
    assert.deepEqual((await manager.list({}, operator)).items[0]?.ports, shown.ports, 'the list shows them as get does');
  });

  it('refuses a host port another VM holds on the only host (409 naming it), a port twice (400), ports without a NIC (400)', async () => {
    const { manager, vms, request } = setup();
    const holder = await manager.create(request('holder', { ports: [{ host_port: 8080, guest_port: 80 }] }), operator);
    await vms.setHost(holder.id, HOST.id, {});
    await rejectsWith(
      manager.create(request('second', { ports: [{ host_port: 8080, guest_port: 81 }] }), operator),
      'conflict',
      /8080\/tcp by VM holder .* on host host-1/,
    );
    assert.equal(
      (await manager.create(request('udp', { ports: [{ host_port: 8080, guest_port: 80, protocol: 'udp' }] }), operator)).ports.length,
      1,
      'udp/8080 is another port',
    );
    await rejectsWith(
      manager.create(
        request('twice', {
          ports: [
            { host_port: 9000, guest_port: 80 },
            { host_port: 9000, guest_port: 81 },
          ],
        }),
        operator,
      ),
      'validation_failed',
      /9000\/tcp is published twice/,
    );
    await rejectsWith(
      manager.create(request('bare', { nic: false, ports: [{ host_port: 9001, guest_port: 80 }] }), operator),
      'validation_failed',
      /need a NIC/,
    );
    await rejectsWith(
      manager.create(request('bare', { networks: [], ports: [{ host_port: 9001, guest_port: 80 }] }), operator),
      'validation_failed',
      /need a NIC/,
    );
    assert.deepEqual((await manager.list({}, operator)).items.map((vm) => vm.name).sort(), ['holder', 'udp'], 'nothing refused was created');
  });

  it('lets a VM take a port held on one host when another host has it free', async () => {
    const other = hostRecord({ id: '11111111-0000-4000-8000-000000000002', name: 'host-2', capacity: { memory_mib: 4096, run_dir: '/srv/fc' } });
    const { manager, vms, request } = setup({ hosts: [HOST, other] });
    const holder = await manager.create(request('holder', { ports: [{ host_port: 8080, guest_port: 80 }] }), operator);
    await vms.setHost(holder.id, HOST.id, {});
    const second = await manager.create(request('second', { ports: [{ host_port: 8080, guest_port: 80 }] }), operator);
    assert.deepEqual(
      (await vms.setHost(second.id, HOST.id, {})).map((taken) => taken.vmName),
      ['holder'],
      'not on the host where it is held: the store says who holds it',
    );
    assert.equal((await vms.get(second.id))?.hostId, null, 'and does not place it');
    assert.deepEqual(await vms.setHost(second.id, other.id, {}), [], 'on the other host it is free');
  });

  it('names a holder of another project to no one outside it', async () => {
    const { manager, vms, request } = setup();
    const theirs = await manager.create(request('secret-name', { project: 'other', ports: [{ host_port: 8080, guest_port: 80 }] }), otherOperator);
    await vms.setHost(theirs.id, HOST.id, {});
    await assert.rejects(manager.create(request('mine', { ports: [{ host_port: 8080, guest_port: 80 }] }), operator), (error: unknown) => {
      assert.ok(error instanceof NexusError && error.code === 'conflict', String(error));
      assert.match(error.message, /8080\/tcp by a VM of another project on host host-1/);
      assert.doesNotMatch(error.message, new RegExp(`secret-name|${theirs.id}`), 'neither its name nor its id');
      return true;
    });
  });

  it('lets only an admin publish a host port below 1024 (403 for an operator)', async () => {
    const { manager, request } = setup();
    await rejectsWith(manager.create(request('low', { ports: [{ host_port: 80, guest_port: 80 }] }), operator), 'forbidden', /below 1024, which only an admin/);
    assert.equal((await manager.create(request('low', { project: 'default', ports: [{ host_port: 80, guest_port: 80 }] }), admin)).ports[0]?.host_port, 80);
  });
});

/** These tests make no VM from a snapshot. */
async function noSnapshots(): Promise<never> {
  throw new Error('no snapshots in this test');
}
