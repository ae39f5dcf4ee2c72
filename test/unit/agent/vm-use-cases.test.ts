import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { SnapshotFiles, VmmCapabilities } from '../../../src/agent/ports/vmm-driver.js';
import { macOf, tapNameOf, vmNetnsNameOf } from '../../../src/contracts/host-names.js';
import type { MachineSpec } from '../../../src/contracts/machine-spec.js';
import type { VmLayout } from '../../../src/contracts/vm-layout.js';
import { NexusError } from '../../../src/kit/nexus-error.js';
import type { ProcessIdentity } from '../../../src/kit/process-identity.js';
import { fakeAgentCore } from '../../doubles/agent-core.js';
import { HollowDriver, type HollowSupervisor } from '../../doubles/hollow-host.js';
import type { MemoryVmStore } from '../../doubles/memory-vm-store.js';
import { testVmId } from '../../support/net-names.js';

/** A hollow driver that can snapshot (state written into the store) and restore, and fail on request. */
class SnapshotDriver extends HollowDriver {
  override readonly capabilities: VmmCapabilities = { pause: true, snapshot: true, gracefulStop: true, driveRateLimits: true, restoreAsNewVm: true };
  failStart = false;
  failRestore = false;
  store: MemoryVmStore | undefined;

  constructor(private readonly processes: HollowSupervisor) {
    super(processes, {});
  }
  override async start(vm: VmLayout, spec: MachineSpec, options: { paused?: boolean } = {}): Promise<ProcessIdentity> {
    if (this.failStart) throw new NexusError('vmm_failed', 'injected: the VMM did not start');
    return super.start(vm, spec, options);
  }
  /** What was asked of it, as `<action> <vm id>`, for pause, resume and snapshot. */
  readonly calls: string[] = [];

  override async pause(vm: VmLayout): Promise<void> {
    this.calls.push(`pause ${vm.id}`);
    return super.pause(vm);
  }
  override async resume(vm: VmLayout): Promise<void> {
    this.calls.push(`resume ${vm.id}`);
    return super.resume(vm);
  }
  /** The next snapshot fills the disk as it is written, and fails as QEMU's pipe does. */
  fillDisk = false;
  override async snapshot(vm: VmLayout, dir: string): Promise<SnapshotFiles> {
    this.calls.push(`snapshot ${vm.id}`);
    if (this.fillDisk && this.store) {
      this.fillDisk = false;
      this.store.put(`${dir}/state.bin`, 'half a state');
      this.store.freeBytes = 4096;
      throw new NexusError('vmm_failed', 'QEMU could not save the VM: Unable to write to command: Broken pipe');
    }
    this.store?.put(`${dir}/state.bin`, 'vmm state');
    return { stateFile: `${dir}/state.bin`, sizeBytes: 9 };
  }
  override async restore(vm: VmLayout): Promise<ProcessIdentity> {
    if (this.failRestore) throw new NexusError('vmm_failed', 'injected: the restore failed');
    await this.pause(vm);
    return this.processes.launch({ vm, binary: 'hollow', args: [] });
  }
}

function agentWithSnapshots() {
  let driver: SnapshotDriver | undefined;
  const agent = fakeAgentCore({ driver: (supervisor) => (driver = new SnapshotDriver(supervisor)), now: () => new Date('2026-12-02T10:00:00Z') });
  const snapshots = driver as SnapshotDriver;
  snapshots.store = agent.store;
  return { ...agent, snapshotDriver: snapshots };
}

async function statesOf(agent: ReturnType<typeof fakeAgentCore>, id: string, steps: Array<() => Promise<unknown>>): Promise<string[]> {
  const states: string[] = [];
  for (const step of steps) {
    await step();
    states.push((await agent.vms.get(id)).state);
  }
  return states;
}

describe('ensure (agent core on fakes)', () => {
  it('makes the folder, a private copy of each image drive and the TAP, then stores the spec', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    const vm = await agent.vms.ensure(id, agent.spec());
    const layout = agent.store.layout(id);
    assert.equal(vm.state, 'configured');
    assert.equal(vm.spec.drives[0]?.path, `${layout.dir}/drives/rootfs.img`, 'the writable image drive is replaced by the private copy');
    assert.equal(agent.store.files.get(`${layout.dir}/drives/rootfs.img`), 'root filesystem', 'the copy holds the image');
    assert.equal(vm.spec.kernel.path, `${agent.images}/vmlinux`, 'the kernel is used in place');
    assert.deepEqual([...agent.network.taps], [tapNameOf(id)]);
    assert.equal(vm.api_socket, layout.qmpSocket, 'the control socket comes from the driver');
  });

  it('repeated with the same spec it changes nothing', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    agent.store.log.length = 0;
    await agent.vms.ensure(id, agent.spec());
    assert.deepEqual(agent.store.log, [], 'no folder made, no disk copied, no spec written');
  });

  for (const [where, fail] of [
    ['copying the drive', (agent: ReturnType<typeof fakeAgentCore>, layout: VmLayout) => agent.store.failNext('copyDisk', `${layout.dir}/drives/rootfs.img`)],
    ['storing the spec', (agent: ReturnType<typeof fakeAgentCore>, layout: VmLayout) => agent.store.failNext('write', layout.specFile)],
  ] as const) {
    it(`a failure ${where} undoes everything the call made: no folder, no disk, no TAP`, async () => {
      const agent = fakeAgentCore();
      const id = testVmId();
      const layout = agent.store.layout(id);
      fail(agent, layout);
      await assert.rejects(agent.vms.ensure(id, agent.spec()), /injected/);
      assert.deepEqual(agent.store.under(layout.dir), [], 'nothing of the VM is left in the store');
      assert.deepEqual([...agent.network.taps], [], 'the TAP it made is gone');
      // And a retry does the whole job.
      assert.equal((await agent.vms.ensure(id, agent.spec())).state, 'configured');
    });
  }

  it('puts a NIC on a network in a namespace of its own, and keeps the network and address in the stored spec', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    const network = { id: '0a1b2c3d-0000-4000-8000-000000000001', cidr: '10.1.0.0/24', egress: 'deny' as const, dns: ['10.1.0.53'] };
    const vm = await agent.vms.ensure(id, { ...agent.spec(), nics: [{ network, ip: '10.1.0.9', tap: 'tap-ffffffff' }] });
    assert.deepEqual(
      agent.network.nicOf.get(vmNetnsNameOf(id)),
      { network, ip: '10.1.0.9', mac: macOf(id) },
      'the namespace is on the network, its lease the address and the MAC',
    );
    assert.deepEqual(vm.spec.nics, [{ network, ip: '10.1.0.9' }], 'the TAP name stays the agent’s to give');
    await agent.vms.act(id, 'start');
    assert.deepEqual(agent.network.nicOf.get(vmNetnsNameOf(id))?.network, network, 'a launch remakes it there');
    assert.equal(agent.network.taps.has(tapNameOf(id)), false, 'no TAP on the flat bridge');
  });

  it("publishes a NIC's ports with its namespace, and keeps them in the stored spec", async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    const network = { id: '0a1b2c3d-0000-4000-8000-000000000001', cidr: '10.1.0.0/24', egress: 'allow' as const, dns: [] };
    const ports = [{ host_port: 8080, guest_port: 80, protocol: 'tcp' as const }];
    const vm = await agent.vms.ensure(id, { ...agent.spec(), nics: [{ network, ip: '10.1.0.9', ports }] });
    assert.deepEqual(vm.spec.nics, [{ network, ip: '10.1.0.9', ports }], 'stored');
    assert.deepEqual(agent.network.nicOf.get(vmNetnsNameOf(id))?.ports, ports, 'plumbed with the namespace');
  });

  it('refuses a NIC on a network without an address in it (or the other way round), ports on no network or twice, storing nothing', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    const network = { id: '0a1b2c3d-0000-4000-8000-000000000001', cidr: '10.1.0.0/24', egress: 'allow' as const, dns: [] };
    const port = { host_port: 8080, guest_port: 80, protocol: 'tcp' as const };
    for (const nic of [
      { network },
      { ip: '10.1.0.9' },
      { network, ip: '10.2.0.9' },
      { network, ip: '10.1.0.1' },
      { ports: [port] },
      { network, ip: '10.1.0.9', ports: [port, { ...port, guest_port: 81 }] },
    ]) {
      await assert.rejects(
        agent.vms.ensure(id, { ...agent.spec(), nics: [nic] }),
        (error: unknown) => error instanceof NexusError && error.code === 'bad_request' && /nics\[0\]/.test(error.message),
        `refused: ${JSON.stringify(nic)}`,
      );
    }
    assert.deepEqual(agent.store.under(agent.store.layout(id).dir), [], 'nothing of the VM is stored');
    assert.deepEqual([...agent.network.taps], [], 'no TAP');
  });

  it('a TAP that was there before a failed ensure stays', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.network.ensureNic(id);
    agent.store.failNext('write', agent.store.layout(id).specFile);
    await assert.rejects(agent.vms.ensure(id, agent.spec()), /injected/);
    assert.deepEqual([...agent.network.taps], [tapNameOf(id)]);
  });

  it('a re-ensure keeps the private copy there: the VM disk is its state, never copied again', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const copy = `${agent.store.layout(id).dir}/drives/rootfs.img`;
    agent.store.files.set(copy, 'written by the guest');
    agent.store.log.length = 0;
    await agent.vms.ensure(id, agent.spec({ mem_mib: 256 }));
    assert.equal(agent.store.files.get(copy), 'written by the guest');
    assert.ok(!agent.store.log.some((entry) => entry.startsWith('copyDisk')), `no copy was made: ${agent.store.log.join(', ')}`);
    assert.ok(agent.store.log.includes(`write ${agent.store.layout(id).specFile}`), 'the new spec is stored');
  });

  it('refuses another spec while the VM runs, and takes it once stopped', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await agent.vms.act(id, 'start');
    await assert.rejects(agent.vms.ensure(id, agent.spec({ mem_mib: 256 })), (error: NexusError) => error.code === 'conflict');
    await agent.vms.act(id, 'stop');
    assert.equal((await agent.vms.ensure(id, agent.spec({ mem_mib: 256 }))).spec.mem_mib, 256);
  });

  it('refuses files outside the allowed roots before touching anything (403), and a missing one (400)', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await assert.rejects(agent.vms.ensure(id, agent.spec({ kernel: { path: '/etc/shadow', cmdline: '' } })), (error: NexusError) => error.code === 'forbidden');
    await assert.rejects(
      agent.vms.ensure(id, agent.spec({ kernel: { path: `${agent.images}/missing`, cmdline: '' } })),
      (error: NexusError) => error.code === 'bad_request',
    );
    assert.deepEqual(agent.store.under(agent.store.layout(id).dir), []);
    assert.deepEqual(agent.store.log, []);
  });

  it('refuses a VM whose TAP name another VM here has, and a driver the host lacks', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const twin = `${id.slice(0, 8)}-0000-4000-8000-000000000000`;
    await assert.rejects(agent.vms.ensure(twin, agent.spec()), (error: NexusError) => error.code === 'conflict' && /already uses TAP/.test(error.message));
    await assert.rejects(
      agent.vms.ensure(testVmId(), agent.spec({ driver: 'firecracker' })),
      (error: NexusError) => error.code === 'conflict' && /not available/.test(error.message),
    );
  });
});

describe('VM actions (agent core on fakes)', () => {
  it('goes configured -> running -> paused -> running -> stopped, and is never `configured` again once launched', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const states = await statesOf(agent, id, [
      () => agent.vms.act(id, 'start'),
      () => agent.vms.act(id, 'pause'),
      () => agent.vms.act(id, 'resume'),
      () => agent.vms.act(id, 'stop'),
      () => agent.vms.act(id, 'stop'),
    ]);
    assert.deepEqual(states, ['running', 'paused', 'running', 'stopped', 'stopped']);
    assert.ok(agent.store.log.includes(`clearConsole ${agent.store.layout(id).consoleLog}`), 'a launch starts a fresh console log');
  });

  it('spawn starts the VMM with the guest paused; start then runs it; both are idempotent', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const states = await statesOf(agent, id, [
      () => agent.vms.spawn(id),
      () => agent.vms.spawn(id),
      () => agent.vms.act(id, 'start'),
      () => agent.vms.act(id, 'start'),
    ]);
    assert.deepEqual(states, ['paused', 'paused', 'running', 'running']);
    assert.equal(agent.supervisor.processes.size, 1, 'one VMM, however often asked');
  });

  it('pause and resume need a running VM (409)', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    for (const action of ['pause', 'resume'] as const) {
      await assert.rejects(agent.vms.act(id, action), (error: NexusError) => error.code === 'conflict' && /it is stopped/.test(error.message));
    }
  });

  it('a VMM that fails to start leaves no TAP the launch made', async () => {
    const agent = agentWithSnapshots();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await agent.network.removeDevice(tapNameOf(id));
    agent.snapshotDriver.failStart = true;
    await assert.rejects(agent.vms.act(id, 'start'), /did not start/);
    assert.deepEqual([...agent.network.taps], []);
    assert.equal(agent.supervisor.processes.size, 0);
  });

  it('a launch checks the stored files again: a spec.json pointed elsewhere is refused', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const layout = agent.store.layout(id);
    const stored = await agent.store.read(layout);
    assert.ok(stored, 'the spec is stored');
    stored.spec.kernel.path = '/etc/passwd';
    await agent.store.write(layout, stored);
    await assert.rejects(agent.vms.act(id, 'start'), (error: NexusError) => error.code === 'forbidden');
    assert.equal(agent.supervisor.processes.size, 0, 'no VMM was started');
  });

  it('an operation on a VM the agent does not have is a 404; a malformed id a 400', async () => {
    const agent = fakeAgentCore();
    await assert.rejects(agent.vms.act(testVmId(), 'start'), (error: NexusError) => error.code === 'not_found');
    await assert.rejects(agent.vms.get('../../etc'), (error: NexusError) => error.code === 'bad_request');
  });
});

describe('delete (agent core on fakes)', () => {
  it('stops the VMM, kills a stray one running for the VM, removes its TAP and folder', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await agent.vms.act(id, 'start');
    const stray = await agent.supervisor.launch({ vm: agent.store.layout(id), binary: 'hollow', args: [] });
    agent.processes.strays.push({ pid: stray.pid, vmId: id, command: 'qemu-system-x86_64 (stray)' });
    await agent.vms.delete(id);
    assert.equal(agent.supervisor.processes.size, 0, 'no VMM is left');
    assert.deepEqual([...agent.network.taps], []);
    assert.deepEqual(agent.store.under(agent.store.layout(id).dir), []);
  });

  it('deleting a VM that is not here (or half gone) succeeds', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.delete(id);
    await agent.vms.ensure(id, agent.spec());
    await agent.store.remove(agent.store.layout(id).specFile);
    await agent.vms.delete(id);
    assert.deepEqual(agent.store.under(agent.store.layout(id).dir), []);
    assert.deepEqual([...agent.network.taps], []);
  });
});

describe('snapshots (agent core on fakes)', () => {
  async function pausedVm(agent: ReturnType<typeof agentWithSnapshots>) {
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await agent.vms.act(id, 'start');
    await agent.vms.act(id, 'pause');
    return { id, layout: agent.store.layout(id) };
  }

  it('a snapshot holds the VMM state, a copy of each writable drive and its record', async () => {
    const agent = agentWithSnapshots();
    const { id, layout } = await pausedVm(agent);
    const { snapshot } = await agent.snapshots.snapshot(id);
    const dir = `${layout.snapshotsDir}/${snapshot.snapshot_id}`;
    assert.equal(snapshot.state_file, `${dir}/state.bin`);
    assert.deepEqual(
      snapshot.drives.map((drive) => drive.path),
      [`${dir}/drive-rootfs.img`],
    );
    assert.deepEqual(JSON.parse(agent.store.files.get(`${dir}/snapshot.json`) ?? 'null'), snapshot);
  });

  it('a snapshot that fails half-way leaves no snapshot folder', async () => {
    const agent = agentWithSnapshots();
    const { id, layout } = await pausedVm(agent);
    const snapshotId = `s-${new Date('2026-12-02T10:00:00Z').getTime().toString(36)}`;
    agent.store.failNext('copyDisk', `${layout.snapshotsDir}/${snapshotId}/drive-rootfs.img`);
    await assert.rejects(agent.snapshots.snapshot(id), /injected/);
    assert.deepEqual(agent.store.under(layout.snapshotsDir), []);
  });

  it('a restore puts the drives back as they were; one that fails puts the VM disk back as it was', async () => {
    const agent = agentWithSnapshots();
    const { id, layout } = await pausedVm(agent);
    const disk = `${layout.dir}/drives/rootfs.img`;
    agent.store.files.set(disk, 'disk at the snapshot');
    const { snapshot } = await agent.snapshots.snapshot(id);
    await agent.vms.act(id, 'stop');
    agent.store.files.set(disk, 'disk written later');

    agent.snapshotDriver.failRestore = true;
    await assert.rejects(agent.snapshots.restore(id, snapshot.snapshot_id), /restore failed/);
    assert.equal(agent.store.files.get(disk), 'disk written later', 'the VM keeps its own disk');
    assert.ok(!agent.store.files.has(`${disk}.before-restore`), 'nothing is left aside');

    agent.snapshotDriver.failRestore = false;
    assert.equal((await agent.snapshots.restore(id, snapshot.snapshot_id)).state, 'running');
    assert.equal(agent.store.files.get(disk), 'disk at the snapshot');
    assert.ok(!agent.store.files.has(`${disk}.before-restore`), 'the old disk is dropped once the restore worked');
  });

  it('refuses to restore into a running VM (409) or from a snapshot it does not have (404)', async () => {
    const agent = agentWithSnapshots();
    const { id } = await pausedVm(agent);
    await assert.rejects(agent.snapshots.restore(id, 's-none'), (error: NexusError) => error.code === 'conflict');
    await agent.vms.act(id, 'stop');
    await assert.rejects(agent.snapshots.restore(id, 's-none'), (error: NexusError) => error.code === 'not_found');
  });
});

describe('snapshots kept on the host (agent core on fakes)', () => {
  async function runningVm(agent: ReturnType<typeof agentWithSnapshots>) {
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await agent.vms.act(id, 'start');
    const disk = `${agent.store.layout(id).dir}/drives/rootfs.img`;
    agent.store.files.set(disk, 'disk of eighteen b');
    return { id, disk };
  }
  const dirOf = (agent: ReturnType<typeof agentWithSnapshots>, sid: string) => `${agent.store.runDir}/snapshots/${sid}`;

  it('captures a running VM paused, then resumes it: state and a copy of each writable drive under <run-dir>/snapshots/<id>', async () => {
    const agent = agentWithSnapshots();
    const { id } = await runningVm(agent);
    const sid = randomUUID();
    const { snapshot, vm } = await agent.snapshots.take(id, sid);
    assert.equal(vm.state, 'running', 'running again');
    assert.ok(agent.snapshotDriver.calls.includes(`pause ${id}`) && agent.snapshotDriver.calls.includes(`resume ${id}`), agent.snapshotDriver.calls.join(', '));
    assert.deepEqual(
      { id: snapshot.id, vm_id: snapshot.vm_id, driver: snapshot.driver, state: snapshot.state_file, drives: snapshot.drives.map((drive) => drive.path) },
      { id: sid, vm_id: id, driver: 'qemu', state: `${dirOf(agent, sid)}/state.bin`, drives: [`${dirOf(agent, sid)}/drive-rootfs.img`] },
    );
    assert.equal(snapshot.size_bytes, 'vmm state'.length + 'disk of eighteen b'.length, 'state and drive copies');
    assert.equal(snapshot.created_at, '2026-12-02T10:00:00.000Z');
    assert.deepEqual(snapshot.spec, (await agent.vms.get(id)).spec, 'the spec it was taken with');
    assert.deepEqual(await agent.snapshots.get(sid), snapshot, 'kept, with its record');
    assert.deepEqual((await agent.leftovers.inventory()).snapshots, [sid], 'in the inventory');
  });

  it('stops the VM after the capture with then: stop; a paused VM stays paused with resume', async () => {
    const agent = agentWithSnapshots();
    const { id } = await runningVm(agent);
    assert.equal((await agent.snapshots.take(id, randomUUID(), 'stop')).vm.state, 'stopped');
    await agent.vms.act(id, 'start');
    await agent.vms.act(id, 'pause');
    agent.snapshotDriver.calls.length = 0;
    assert.equal((await agent.snapshots.take(id, randomUUID())).vm.state, 'paused');
    assert.deepEqual(agent.snapshotDriver.calls, [`snapshot ${id}`, `resume ${id}`, `pause ${id}`], 'run a moment, so the VMM takes a second save');
  });

  it('answers the snapshot taken when asked again with its id; refuses that id for another VM', async () => {
    const agent = agentWithSnapshots();
    const { id } = await runningVm(agent);
    const sid = randomUUID();
    const first = await agent.snapshots.take(id, sid);
    agent.snapshotDriver.calls.length = 0;
    assert.deepEqual((await agent.snapshots.take(id, sid)).snapshot, first.snapshot, 'the same snapshot');
    assert.deepEqual(agent.snapshotDriver.calls, [], 'nothing captured again');
    const other = await runningVm(agent);
    await assert.rejects(agent.snapshots.take(other.id, sid), (error: NexusError) => error.code === 'conflict' && /of another VM/.test(error.message));
    assert.equal((await agent.snapshots.take(id, sid, 'stop')).vm.state, 'stopped', 'a retry still stops the VM when asked to');
  });

  it('refuses (507) a capture the disk cannot hold before pausing the guest, and makes nothing', async () => {
    const agent = agentWithSnapshots();
    const { id } = await runningVm(agent);
    const memory = agent.spec().mem_mib * 2 ** 20;
    // Room for the memory but not for the disk copy too.
    agent.store.freeBytes = memory + 'disk of eighteen b'.length - 1;
    agent.snapshotDriver.calls.length = 0;
    const sid = randomUUID();
    await assert.rejects(agent.snapshots.take(id, sid), (error: NexusError) => {
      assert.equal(error.code, 'insufficient_storage', error.message);
      assert.match(error.message, new RegExp(`the disk holding ${agent.store.runDir}/snapshots has \\d+ MiB free; a snapshot of VM ${id} may need`));
      return true;
    });
    assert.deepEqual(agent.snapshotDriver.calls, [], 'the guest was never paused');
    assert.deepEqual(agent.store.under(dirOf(agent, sid)), [], 'no folder');
    assert.equal((await agent.vms.get(id)).state, 'running');
    agent.store.freeBytes += 1;
    assert.equal((await agent.snapshots.take(id, sid)).snapshot.id, sid, 'with room for both, it is taken');
  });

  it('refuses a VM that is not running (409) and makes nothing', async () => {
    const agent = agentWithSnapshots();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const sid = randomUUID();
    await assert.rejects(agent.snapshots.take(id, sid), (error: NexusError) => error.code === 'conflict' && /only a running or paused VM/.test(error.message));
    assert.deepEqual(agent.store.under(dirOf(agent, sid)), []);
    await assert.rejects(agent.snapshots.take(testVmId(), sid), (error: NexusError) => error.code === 'not_found', 'no such VM');
    await assert.rejects(agent.snapshots.take(id, 'not-a-uuid'), (error: NexusError) => error.code === 'bad_request', 'a malformed id');
  });

  it('a capture that fails leaves no folder and the VM running; a full disk is a 507 that says so', async () => {
    const agent = agentWithSnapshots();
    const { id } = await runningVm(agent);
    const sid = randomUUID();
    agent.store.failNext('copyDisk', `${dirOf(agent, sid)}/drive-rootfs.img`);
    await assert.rejects(agent.snapshots.take(id, sid), /injected/);
    assert.deepEqual(agent.store.under(dirOf(agent, sid)), [], 'nothing half-written is left');
    assert.equal((await agent.vms.get(id)).state, 'running', 'resumed');

    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    agent.store.failNext('copyDisk', `${dirOf(agent, sid)}/drive-rootfs.img`, full);
    await assert.rejects(
      agent.snapshots.take(id, sid),
      (error: NexusError) => error.code === 'insufficient_storage' && error.message.includes(`${dirOf(agent, sid)} filled up`),
    );
    assert.deepEqual(agent.store.under(dirOf(agent, sid)), []);
    assert.equal((await agent.vms.get(id)).state, 'running', 'resumed');

    // A VMM that writes through a pipe says only "broken pipe": a disk left full says the rest.
    agent.snapshotDriver.fillDisk = true;
    await assert.rejects(agent.snapshots.take(id, sid), (error: NexusError) => {
      assert.equal(error.code, 'insufficient_storage', error.message);
      assert.match(error.message, /filled up while the snapshot was written/);
      return true;
    });
    assert.deepEqual(agent.store.under(dirOf(agent, sid)), [], 'the half-written state is removed');
    assert.equal((await agent.vms.get(id)).state, 'running', 'resumed');
    agent.store.freeBytes = Number.MAX_SAFE_INTEGER;
    agent.store.failNext('copyDisk', `${dirOf(agent, sid)}/drive-rootfs.img`);
    await assert.rejects(agent.snapshots.take(id, sid), /injected/, 'a failure with room left is passed on as it was');
  });

  it('deletes a snapshot, complete or half-written, and a missing one is fine', async () => {
    const agent = agentWithSnapshots();
    const { id } = await runningVm(agent);
    const sid = randomUUID();
    await agent.snapshots.take(id, sid);
    await agent.snapshots.delete(sid);
    assert.deepEqual(agent.store.under(dirOf(agent, sid)), []);
    await assert.rejects(agent.snapshots.get(sid), (error: NexusError) => error.code === 'not_found');
    const partial = randomUUID();
    agent.store.put(`${dirOf(agent, partial)}/state.bin`, 'half');
    await assert.rejects(agent.snapshots.get(partial), (error: NexusError) => error.code === 'not_found', 'no record: not a snapshot yet');
    assert.deepEqual((await agent.leftovers.inventory()).snapshots, [partial], 'but in the inventory');
    await agent.snapshots.delete(partial);
    await agent.snapshots.delete(partial);
    assert.deepEqual(agent.store.under(dirOf(agent, partial)), []);
  });
});

describe('VMs restored from a snapshot kept on the host (agent core on fakes)', () => {
  const network = { id: '9e0b0000-0000-4000-8000-000000000001', cidr: '10.9.0.0/24', egress: 'allow' as const, dns: [] };
  /** A spec on the test network at `ip`. */
  const onNetwork = (agent: ReturnType<typeof agentWithSnapshots>, ip: string): MachineSpec => agent.spec({ nics: [{ network, ip }] });

  /** A running VM at 10.9.0.5 with a disk of its own, and a snapshot of it. */
  async function snapshotted(agent: ReturnType<typeof agentWithSnapshots>) {
    const source = testVmId();
    await agent.vms.ensure(source, onNetwork(agent, '10.9.0.5'));
    await agent.vms.act(source, 'start');
    agent.store.files.set(`${agent.store.layout(source).dir}/drives/rootfs.img`, 'the disk as the guest left it');
    const sid = randomUUID();
    await agent.snapshots.take(source, sid);
    return { source, sid };
  }

  it("makes a running VM from it: a private copy of its disk, its own address, the guest's kept and translated", async () => {
    const agent = agentWithSnapshots();
    const { source, sid } = await snapshotted(agent);
    const clone = testVmId();
    const vm = await agent.snapshots.instantiate(sid, clone, onNetwork(agent, '10.9.0.6'));
    assert.equal(vm.state, 'running', 'restored and resumed, not booted');
    assert.ok(agent.snapshotDriver.calls.includes(`resume ${clone}`), agent.snapshotDriver.calls.join(', '));
    const disk = `${agent.store.layout(clone).dir}/drives/rootfs.img`;
    assert.equal(vm.spec.drives[0]?.path, disk, 'its own disk');
    assert.equal(agent.store.files.get(disk), 'the disk as the guest left it', "a copy of the snapshot's, not of the image");
    assert.deepEqual(
      { ip: vm.spec.nics[0]?.ip, guest: vm.spec.nics[0]?.guest_ip, mac: vm.spec.nics[0]?.mac },
      { ip: '10.9.0.6', guest: '10.9.0.5', mac: macOf(source) },
      "its own address; the guest's, and its MAC, as the snapshot's memory holds them",
    );
    const nic = agent.network.nicOf.get(vmNetnsNameOf(clone));
    assert.deepEqual([nic?.ip, nic?.guestIp], ['10.9.0.6', '10.9.0.5'], 'its namespace translates between the two');
    assert.equal((await agent.vms.get(source)).state, 'running', 'the original runs on');

    assert.deepEqual(await agent.snapshots.instantiate(sid, clone, onNetwork(agent, '10.9.0.6')), vm, 'asked again: the VM made');

    // A fresh boot takes the address its boot args give: the frozen one is gone with the memory.
    await agent.vms.act(clone, 'stop');
    const booted = await agent.vms.act(clone, 'start');
    assert.equal(booted.spec.nics[0]?.guest_ip, undefined);
    assert.equal(agent.network.nicOf.get(vmNetnsNameOf(clone))?.guestIp, undefined, 'plumbed for its own address');
  });

  it("refuses another machine than the snapshot's (409), a snapshot not here (404), and leaves nothing", async () => {
    const agent = agentWithSnapshots();
    const { sid } = await snapshotted(agent);
    const clone = testVmId();
    await assert.rejects(agent.snapshots.instantiate(sid, clone, { ...onNetwork(agent, '10.9.0.6'), mem_mib: 512 }), (error: NexusError) => {
      assert.equal(error.code, 'conflict');
      assert.match(error.message, /is not the machine snapshot .* is of: mem_mib 512, not 128/);
      return true;
    });
    await assert.rejects(agent.snapshots.instantiate(sid, clone, agent.spec({ nics: [] })), /0 NICs, not 1/);
    await assert.rejects(agent.snapshots.instantiate(randomUUID(), clone, onNetwork(agent, '10.9.0.6')), (error: NexusError) => error.code === 'not_found');
    assert.equal(await agent.store.hasFolder(agent.store.layout(clone)), false, 'no folder');
    assert.equal(agent.network.nicOf.has(vmNetnsNameOf(clone)), false, 'no namespace');
  });

  it('undoes everything when the restore fails', async () => {
    const agent = agentWithSnapshots();
    const { sid } = await snapshotted(agent);
    const clone = testVmId();
    agent.snapshotDriver.failRestore = true;
    await assert.rejects(agent.snapshots.instantiate(sid, clone, onNetwork(agent, '10.9.0.6')), /injected: the restore failed/);
    assert.equal(await agent.store.hasFolder(agent.store.layout(clone)), false, 'no folder, no disk copy');
    assert.equal(agent.network.nicOf.has(vmNetnsNameOf(clone)), false, 'no namespace');
    assert.equal(await agent.supervisor.adopt(agent.store.layout(clone)), undefined, 'no VMM');
  });
});

describe('hibernation (agent core on fakes)', () => {
  async function runningVm(agent: ReturnType<typeof agentWithSnapshots>) {
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await agent.vms.act(id, 'start');
    return id;
  }

  it('saves the VM and ends its VMM; wakes it in place, its saved state gone once it runs', async () => {
    const agent = agentWithSnapshots();
    const id = await runningVm(agent);
    const layout = agent.store.layout(id);
    const asleep = await agent.hibernation.hibernate(id);
    assert.equal(asleep.state, 'hibernated');
    assert.equal(asleep.pid, null, 'no VMM: its memory is back with the host');
    assert.ok(agent.store.files.has(`${layout.hibernationDir}/state.bin`) && agent.store.files.has(layout.hibernationRecord), 'saved, with its record');
    assert.equal((await agent.hibernation.hibernate(id)).state, 'hibernated', 'asked again: as it is');
    agent.snapshotDriver.calls.length = 0;
    const awake = await agent.hibernation.wake(id);
    assert.equal(awake.state, 'running');
    assert.ok(awake.pid !== null);
    assert.deepEqual(agent.snapshotDriver.calls, [`pause ${id}`, `resume ${id}`], 'restored (paused), then resumed: not booted');
    assert.deepEqual(agent.store.under(layout.hibernationDir), [], 'its saved state is gone');
    assert.deepEqual(awake.spec.drives, asleep.spec.drives, 'the same disks, not copies');
    assert.equal((await agent.hibernation.wake(id)).state, 'running', 'asked again: as it is');
  });

  it('refuses a VM that is not running (409) and one that is not hibernated to wake (409)', async () => {
    const agent = agentWithSnapshots();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await assert.rejects(
      agent.hibernation.hibernate(id),
      (error: NexusError) => error.code === 'conflict' && /only a running or paused VM hibernates/.test(error.message),
    );
    await assert.rejects(agent.hibernation.wake(id), (error: NexusError) => error.code === 'conflict' && /is not hibernated/.test(error.message));
  });

  it('a start boots a hibernated VM afresh and drops what was saved', async () => {
    const agent = agentWithSnapshots();
    const id = await runningVm(agent);
    await agent.hibernation.hibernate(id);
    assert.equal((await agent.vms.act(id, 'start')).state, 'running');
    assert.deepEqual(agent.store.under(agent.store.layout(id).hibernationDir), [], 'its memory would not match its disks any more');
    await agent.vms.act(id, 'stop');
    assert.equal((await agent.vms.get(id)).state, 'stopped', 'stopped, not hibernated');
  });

  it('a save that fails leaves the guest running and nothing saved; a full disk is refused before pausing', async () => {
    const agent = agentWithSnapshots();
    const id = await runningVm(agent);
    const layout = agent.store.layout(id);
    agent.snapshotDriver.fillDisk = true;
    await assert.rejects(agent.hibernation.hibernate(id), /Broken pipe/);
    assert.equal((await agent.vms.get(id)).state, 'running', 'resumed');
    assert.deepEqual(agent.store.under(layout.hibernationDir), []);
    agent.store.freeBytes = 1024;
    agent.snapshotDriver.calls.length = 0;
    await assert.rejects(agent.hibernation.hibernate(id), (error: NexusError) => error.code === 'insufficient_storage');
    assert.deepEqual(agent.snapshotDriver.calls, [], 'never paused');
  });
});

describe('leftovers, expiry and metrics (agent core on fakes)', () => {
  it('the inventory names what belongs to no VM, and collection removes only what still is an orphan', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const runDir = agent.store.runDir;
    agent.store.folders.add(`${runDir}/vms/not-a-vm`);
    agent.network.taps.add('nxforeign0');
    agent.processes.strays.push({ pid: 424242, vmId: testVmId(), command: 'qemu-system-x86_64 (orphan)' });
    agent.store.sockets.add(agent.store.layout(id).qmpSocket);

    const { vms, orphans } = await agent.leftovers.inventory();
    assert.deepEqual(
      vms.map((vm) => vm.id),
      [id],
    );
    assert.deepEqual(orphans.dirs, [`${runDir}/vms/not-a-vm`]);
    assert.deepEqual(orphans.taps, ['nxforeign0']);
    assert.deepEqual(
      orphans.processes.map((entry) => entry.pid),
      [424242],
    );
    assert.deepEqual(orphans.sockets, [agent.store.layout(id).qmpSocket], 'the socket of a VM with no VMM is a leftover');

    // The VM starts meanwhile: its socket is its own again, and is not removed.
    await agent.vms.act(id, 'start');
    const removed = await agent.leftovers.collectOrphans({ dirs: orphans.dirs, taps: orphans.taps, processes: [], sockets: orphans.sockets, snapshots: [] });
    assert.deepEqual(removed, { dirs: [`${runDir}/vms/not-a-vm`], taps: ['nxforeign0'], processes: [], sockets: [], snapshots: [] });
    assert.ok(agent.store.sockets.has(agent.store.layout(id).qmpSocket), 'the running VM keeps its socket');
    assert.deepEqual(agent.removed, [removed], 'the metrics hook was told');
  });

  it('deletes the VMs whose expiry has passed, and only those', async () => {
    const agent = fakeAgentCore();
    const due = testVmId();
    const later = testVmId();
    await agent.vms.ensure(due, agent.spec({ expires_at: '2026-12-02T09:59:59Z' }));
    await agent.vms.ensure(later, agent.spec({ expires_at: '2026-12-02T10:00:01Z' }));
    assert.deepEqual(await agent.expiry.expireDue(new Date('2026-12-02T10:00:00Z')), [due]);
    assert.deepEqual(await agent.store.ids(), [later]);
  });

  it('samples the running VMs only, and answers their recent records', async () => {
    const agent = fakeAgentCore({ now: () => new Date('2026-12-02T10:00:00Z') });
    const running = testVmId();
    const stopped = testVmId();
    await agent.vms.ensure(running, agent.spec());
    await agent.vms.ensure(stopped, agent.spec());
    await agent.vms.act(running, 'start');
    assert.equal(await agent.metrics.sample(), 1);
    const [record] = await agent.metrics.recent(running, 60);
    assert.equal(record?.rss_bytes, 64 * 1024 * 1024);
    assert.deepEqual(await agent.metrics.recent(stopped, 60), []);
    await assert.rejects(agent.metrics.recent(testVmId(), 60), (error: NexusError) => error.code === 'not_found');
  });
});

describe('the socket proxy guard (agent core on fakes)', () => {
  class ApiSocketDriver extends HollowDriver {
    async apiSocket(vm: VmLayout): Promise<string> {
      return vm.firecrackerSocket;
    }
  }

  it('relays to the VM own socket only, and only while it runs', async () => {
    const agent = fakeAgentCore({ driver: (supervisor) => new ApiSocketDriver(supervisor, {}) });
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    const own = agent.store.layout(id).firecrackerSocket;
    await assert.rejects(
      agent.proxy.proxy(id, undefined, async () => 'relayed'),
      (error: NexusError) => error.code === 'conflict',
      'not running: nothing answers',
    );
    await agent.vms.act(id, 'start');
    agent.store.sockets.add(own);
    assert.equal(await agent.proxy.proxy(id, undefined, async (socket) => socket), own);
    for (const wanted of ['/run/other.sock', 'relative.sock', `${agent.store.layout(id).dir}/spec.json`]) {
      await assert.rejects(
        agent.proxy.proxy(id, wanted, async () => 'relayed'),
        (error: NexusError) => error.code === 'forbidden',
        `${wanted} is refused`,
      );
    }
    agent.store.put(`${agent.store.layout(id).sockDir}/not-a-socket`);
    await assert.rejects(
      agent.proxy.proxy(id, `${agent.store.layout(id).sockDir}/not-a-socket`, async () => 'relayed'),
      (error: NexusError) => error.code === 'forbidden',
    );
  });

  it('a VM whose driver has no API socket is a 409', async () => {
    const agent = fakeAgentCore();
    const id = testVmId();
    await agent.vms.ensure(id, agent.spec());
    await assert.rejects(
      agent.proxy.proxy(id, undefined, async () => 'relayed'),
      (error: NexusError) => error.code === 'conflict' && /no API socket/.test(error.message),
    );
  });
});
