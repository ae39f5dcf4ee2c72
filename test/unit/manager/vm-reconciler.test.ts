import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { VmReconciler, type VmReconcilerConfig } from '../../../src/manager/reconcilers/vm-reconciler.js';
import type { AgentTarget } from '../../../src/manager/ports/agent-gateway.js';
import type { StoredVmSpec } from '../../../src/manager/ports/vm-repo.js';
import { captureLogger } from '../../support/capture-logger.js';
import { FakeAgentGateway, ManualClock, MemoryHostRepo, MemoryImageRepo, MemoryVmRepo, alwaysLeader, hostRecord } from '../../doubles/memory-manager.js';

const HOST = hostRecord({ capacity: { drivers: [{ name: 'qemu', available: true, version: 'test' }] } });
const STABLE_RUN_MS = 60_000;
const CONFIG: VmReconcilerConfig = { resyncMs: 15_000, vcpuOvercommit: 4, startRetryBudget: 3, stableRunMs: STABLE_RUN_MS, pollMs: 100 };

/**
 * The reconciler over in-memory ports: one ready host holding a kernel and a rootfs image, a fake
 * agent on it, a manual clock. `fresh()` builds another reconciler on the same store and agents:
 * a manager restart, or a new leader.
 */
function setup() {
  const clock = new ManualClock();
  const vms = new MemoryVmRepo(clock);
  const hosts = new MemoryHostRepo([HOST]);
  const images = new MemoryImageRepo();
  const kernel = images.put({ name: 'default', kind: 'kernel' }, { [HOST.id]: '/srv/fc/images/default/vmlinux' });
  const rootfs = images.put({ name: 'default', kind: 'rootfs' }, { [HOST.id]: '/srv/fc/images/default/rootfs.ext4' });
  const agents = new FakeAgentGateway();
  const fresh = () => new VmReconciler(vms, hosts, images, agents, clock, captureLogger('reconciler').log, CONFIG, alwaysLeader);
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
    nic: true,
  };
  const create = (name: string, desiredState: 'running' | 'stopped' = 'running') =>
    vms.create({ project: 'default', name, spec, desiredState, tags: {}, expiresAt: null }, () => undefined);
  return { clock, vms, hosts, images, agents, fresh, create, reconciler: fresh() };
}

/** Reconciles the VM until it asks to be looked at later than now (at most `passes` times); answers the last requeue. */
async function settle(reconciler: VmReconciler, id: string, passes = 10): Promise<number | undefined> {
  for (let pass = 0; pass < passes; pass++) {
    const result = await reconciler.reconcile(id);
    if (!result || result.requeueAfterMs > 0) return result?.requeueAfterMs;
  }
  throw new Error(`VM ${id} did not settle in ${passes} passes`);
}

describe('VmReconciler (on fakes)', () => {
  it('places a VM, records its host image paths as status (not in the spec), ensures and starts it', async () => {
    const { vms, agents, reconciler, create } = setup();
    const vm = await create('web');
    assert.equal(await settle(reconciler, vm.id), CONFIG.resyncMs);
    const stored = await vms.get(vm.id);
    assert.equal(stored?.hostId, HOST.id);
    assert.equal(stored?.observedState, 'running');
    assert.equal(stored?.spec.kernel_path, null, "the user's spec is left as asked");
    assert.equal(stored?.status.placedPaths[vm.spec.kernel_image_id ?? ''], '/srv/fc/images/default/vmlinux');
    assert.equal(agents.vm(HOST.id, vm.id)?.spec.kernel.path, '/srv/fc/images/default/vmlinux', 'the agent got the host path');
    assert.equal(stored?.status.driver, 'qemu', "the agent's driver is recorded");
    assert.equal(stored?.status.apiSocket, agents.vm(HOST.id, vm.id)?.api_socket, "the agent's files are recorded, not computed");
    assert.ok(stored?.status.startedAt, 'the start is recorded');
    assert.deepEqual(
      (await vms.events(vm.id)).map((event) => event.toState),
      ['configured', 'starting', 'running'],
    );
  });

  it('hibernates a VM wanted hibernated, and wakes it when wanted running: the wake is an event that says how long it took', async () => {
    const { vms, agents, reconciler, create, clock } = setup();
    const vm = await create('sleeper');
    await settle(reconciler, vm.id);
    await vms.setDesired(vm.id, 'hibernated');
    await settle(reconciler, vm.id);
    assert.equal(agents.vm(HOST.id, vm.id)?.state, 'hibernated', 'the agent saved it and ended its VMM');
    assert.equal((await vms.get(vm.id))?.observedState, 'hibernated');
    await vms.setDesired(vm.id, 'running');
    reconciler.wake(vm.id, true);
    clock.advance(250);
    await settle(reconciler, vm.id);
    assert.equal(agents.vm(HOST.id, vm.id)?.state, 'running');
    const events = (await vms.events(vm.id)).map((event) => `${event.toState} ${event.message}`);
    assert.ok(events.includes('stopping saving its memory and ending its VMM (hibernating)'), events.join('\n'));
    assert.ok(events.includes('running woke from hibernation in 0 ms (250 ms after it was asked)'), events.join('\n'));
    assert.ok((await vms.get(vm.id))?.status.startedAt, 'a wake counts as a start, for crash detection');
  });

  it('walks every desired state: stopped, paused, running again, deleted', async () => {
    const { vms, agents, reconciler, create } = setup();
    const vm = await create('walk');
    await settle(reconciler, vm.id);
    const states: string[] = [];
    for (const desired of ['stopped', 'running', 'paused', 'running'] as const) {
      await vms.setDesired(vm.id, desired);
      await settle(reconciler, vm.id);
      states.push(`${(await vms.get(vm.id))?.observedState}/${agents.vm(HOST.id, vm.id)?.state}`);
    }
    assert.deepEqual(states, ['stopped/stopped', 'running/running', 'paused/paused', 'running/running']);
    await vms.setDesired(vm.id, 'deleted');
    assert.equal(await reconciler.reconcile(vm.id), undefined, 'a deleted VM is not looked at again');
    assert.equal(await vms.get(vm.id), undefined);
    assert.equal(agents.vm(HOST.id, vm.id), undefined, 'the agent deleted it');
  });

  it('a VM that stays stopped is ensured but never started', async () => {
    const { vms, agents, reconciler, create } = setup();
    const vm = await create('cold', 'stopped');
    await settle(reconciler, vm.id);
    assert.equal((await vms.get(vm.id))?.observedState, 'configured');
    assert.equal(agents.calls.act, 0, 'no action was taken');
  });

  it('an agent out of reach is retried (the error goes to the work queue); a refusal is the VM failure, recorded once', async () => {
    const { vms, agents, reconciler, create } = setup();
    const vm = await create('flaky');
    await reconciler.reconcile(vm.id); // placed
    agents.failNext('ensureVm', new NexusError('unavailable', 'connection refused'));
    await assert.rejects(reconciler.reconcile(vm.id), (error: NexusError) => error.code === 'unavailable', 'the queue backs off and retries');
    assert.equal((await vms.get(vm.id))?.lastError, null, 'a retry is no failure of the VM');
    agents.failNext('ensureVm', new NexusError('validation_failed', 'the kernel is not a file'));
    const result = await reconciler.reconcile(vm.id);
    assert.ok(result && result.requeueAfterMs > 0, 'a refusal is looked at again later, not at once');
    const failed = await vms.get(vm.id);
    assert.equal(failed?.observedState, 'failed');
    assert.equal(failed?.lastError?.reason, 'validation_failed');
    assert.equal(failed?.status.startFailures, 0, 'an ensure refused is no failed start');
  });

  it('refused starts back off and give up after the budget; the VM then stays failed, through a manager restart too', async () => {
    const { vms, hosts, agents, reconciler, fresh, create } = setup();
    const vm = await create('refused');
    await reconciler.reconcile(vm.id); // placed
    await reconciler.reconcile(vm.id); // ensured
    const backoffs: number[] = [];
    for (let attempt = 0; attempt < CONFIG.startRetryBudget; attempt++) {
      agents.failNext('act', new NexusError('vmm_failed', 'QEMU exited while starting'));
      backoffs.push((await reconciler.reconcile(vm.id))?.requeueAfterMs ?? -1);
    }
    assert.deepEqual(backoffs, [2000, 4000, 8000], 'exponential backoff between failed starts');
    assert.equal((await vms.get(vm.id))?.status.startFailures, 3);
    const actsBefore = agents.calls.act;
    assert.equal(await reconciler.reconcile(vm.id).then((result) => result?.requeueAfterMs), CONFIG.resyncMs);
    // A manager restart (or a new leader) starts from the row, not from nothing.
    const restarted = fresh();
    assert.equal(await settle(restarted, vm.id), CONFIG.resyncMs);
    assert.equal(agents.calls.act, actsBefore, 'nothing was started after giving up, before or after the restart');
    assert.equal((await vms.get(vm.id))?.observedState, 'failed', 'it stays failed (its VMM never ran: the agent says configured)');
    assert.equal((await vms.get(vm.id))?.lastError?.reason, 'vmm_failed', 'with its error');
    // Its host lost and found again: seen unknown, then as the agent says, and still not started.
    hosts.put({ ...HOST, status: 'unreachable' });
    await settle(restarted, vm.id);
    hosts.put(HOST);
    await settle(restarted, vm.id);
    assert.equal(agents.calls.act, actsBefore, 'nothing was started once its host came back either');
    assert.equal((await vms.get(vm.id))?.observedState, 'failed', 'and it is shown failed again, not stopped');
    // A user asking again renews the budget.
    await vms.setDesired(vm.id, 'running');
    await settle(restarted, vm.id);
    assert.equal((await vms.get(vm.id))?.observedState, 'running');
  });

  it("a user's new start while a start is under way keeps its renewed budget: the failed start's older count is not written", async () => {
    const { vms, agents, reconciler, create } = setup();
    const vm = await create('raced');
    await reconciler.reconcile(vm.id); // placed
    await reconciler.reconcile(vm.id); // ensured
    for (let attempt = 0; attempt < CONFIG.startRetryBudget - 1; attempt++) {
      agents.failNext('act', new NexusError('vmm_failed', 'QEMU exited while starting'));
      await reconciler.reconcile(vm.id);
    }
    assert.equal((await vms.get(vm.id))?.status.startFailures, 2);
    // The last start of the budget: while the agent works on it, the user asks again; then it fails.
    const act = agents.act.bind(agents);
    agents.act = async (_target: AgentTarget, id: string) => {
      await vms.setDesired(id, 'running');
      agents.act = act;
      throw new NexusError('vmm_failed', 'QEMU exited while starting');
    };
    await reconciler.reconcile(vm.id);
    assert.equal((await vms.get(vm.id))?.status.startFailures, 0, "the user's renewed budget stands");
    await settle(reconciler, vm.id);
    assert.equal((await vms.get(vm.id))?.observedState, 'running', 'so the next start is made, and works');
  });

  it('a VM given up on still shows the files its agent reports (its console log)', async () => {
    const { vms, agents, reconciler, create } = setup();
    const vm = await create('quiet');
    await reconciler.reconcile(vm.id);
    await reconciler.reconcile(vm.id);
    for (let attempt = 0; attempt < CONFIG.startRetryBudget; attempt++) {
      agents.failNext('act', new NexusError('vmm_failed', 'QEMU exited while starting'));
      await reconciler.reconcile(vm.id);
    }
    await vms.setAgentView(vm.id, { driver: 'qemu', apiSocket: 'stale', consoleLog: 'stale' });
    await reconciler.reconcile(vm.id);
    assert.equal((await vms.get(vm.id))?.status.consoleLog, agents.vm(HOST.id, vm.id)?.console_log);
  });

  it('a VMM that crashes soon after starting, again and again, is given up on; the count survives a manager restart', async () => {
    const { vms, agents, reconciler, fresh, create, clock } = setup();
    agents.consoleLines = ['Kernel panic - not syncing: VFS: Unable to mount root fs'];
    const vm = await create('panics');
    await settle(reconciler, vm.id);
    for (let crash = 1; crash <= CONFIG.startRetryBudget; crash++) {
      clock.advance(1000);
      agents.crash(HOST.id, vm.id);
      // Every crash on a new manager: the count is the row's, not a manager's memory.
      await settle(fresh(), vm.id);
      assert.equal((await vms.get(vm.id))?.status.startFailures, crash, `crash ${crash} counted`);
    }
    const failed = await vms.get(vm.id);
    assert.equal(failed?.observedState, 'failed');
    assert.equal(failed?.lastError?.reason, 'vmm_exited');
    assert.deepEqual(failed?.lastError?.console_tail, agents.consoleLines, 'the console says why');
    const actsBefore = agents.calls.act;
    await settle(fresh(), vm.id);
    assert.equal(agents.calls.act, actsBefore, 'a restarted manager does not start a VM given up on');
    assert.equal(agents.vm(HOST.id, vm.id)?.state, 'stopped');
  });

  it('a VMM that ran a good while before crashing is restarted with a fresh count; a long run forgives earlier failures', async () => {
    const { vms, agents, reconciler, create, clock } = setup();
    const vm = await create('long-runner');
    await settle(reconciler, vm.id);
    clock.advance(1000);
    agents.crash(HOST.id, vm.id);
    const requeue = await settle(reconciler, vm.id);
    assert.equal((await vms.get(vm.id))?.status.startFailures, 1, 'an early crash counts');
    assert.equal(requeue, STABLE_RUN_MS < CONFIG.resyncMs ? STABLE_RUN_MS : CONFIG.resyncMs, 'looked at again when the run would be forgiven');
    clock.advance(STABLE_RUN_MS);
    await settle(reconciler, vm.id);
    assert.equal((await vms.get(vm.id))?.status.startFailures, 0, 'a run of stableRunMs forgives');
    clock.advance(STABLE_RUN_MS * 2);
    agents.crash(HOST.id, vm.id);
    await settle(reconciler, vm.id);
    assert.equal((await vms.get(vm.id))?.status.startFailures, 1, 'a crash after a long run starts counting at one');
    assert.equal(agents.vm(HOST.id, vm.id)?.state, 'running', 'and it was restarted');
  });

  it('a VM whose host is unreachable is unknown and left alone; one that fits no host fails with no_capacity', async () => {
    const { vms, hosts, agents, reconciler, create } = setup();
    const vm = await create('on-a-lost-host');
    await settle(reconciler, vm.id);
    hosts.put({ ...HOST, status: 'unreachable' });
    const callsBefore = agents.calls.getVm;
    assert.equal(await reconciler.reconcile(vm.id).then((result) => result?.requeueAfterMs), CONFIG.resyncMs);
    assert.equal((await vms.get(vm.id))?.observedState, 'unknown');
    assert.equal(agents.calls.getVm, callsBefore, 'the agent is not called');

    const big = await vms.create(
      {
        project: 'default',
        name: 'too-big',
        spec: { ...(await vms.get(vm.id))!.spec, mem_mib: 1_000_000 },
        desiredState: 'running',
        tags: {},
        expiresAt: null,
      },
      () => undefined,
    );
    hosts.put(HOST);
    await reconciler.reconcile(big.id);
    assert.equal((await vms.get(big.id))?.lastError?.reason, 'no_capacity');
  });

  it('a running VM whose TAP is gone is restarted, to get a fresh one', async () => {
    const { vms, agents, reconciler, create } = setup();
    const vm = await create('tapless');
    await settle(reconciler, vm.id);
    const agentVm = agents.vm(HOST.id, vm.id);
    assert.ok(agentVm, 'the agent has the VM');
    agents.seed(HOST.id, vm.id, agentVm.spec, 'running');
    // The fake reports the TAP as present; take it away behind the manager's back.
    (agents as unknown as { agent(hostId: string): { vms: Map<string, { tap_present: boolean | null }> } }).agent(HOST.id).vms.get(vm.id)!.tap_present = false;
    await reconciler.reconcile(vm.id);
    assert.equal(agents.vm(HOST.id, vm.id)?.state, 'stopped', 'stopped, so the next start makes a fresh TAP');
    assert.equal((await vms.get(vm.id))?.observedState, 'stopping');
  });

  it('an expired VM is deleted', async () => {
    const { vms, agents, reconciler, clock } = setup();
    const spec = (await setup().create('x')).spec;
    const vm = await vms.create(
      { project: 'default', name: 'ephemeral', spec, desiredState: 'running', tags: {}, expiresAt: new Date(clock.now().getTime() + 60_000) },
      () => undefined,
    );
    const requeue = await settle(reconciler, vm.id);
    assert.ok(requeue !== undefined && requeue <= 60_000, `looked at again by its expiry (${requeue})`);
    clock.advance(60_000);
    await settle(reconciler, vm.id);
    assert.equal(await vms.get(vm.id), undefined);
    assert.equal(agents.vm(HOST.id, vm.id), undefined);
  });
});
