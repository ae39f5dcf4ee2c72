import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tapNameOf } from '../../../src/contracts/host-names.js';
import type { VmLayout } from '../../../src/contracts/vm-layout.js';
import { fakeAgentCore } from '../../doubles/agent-core.js';
import { HollowDriver, type HollowSupervisor } from '../../doubles/hollow-host.js';
import { testVmId } from '../../support/net-names.js';

/**
 * A hollow driver whose stops wait at a gate until the test releases them (or fail), and which
 * counts how many run at once: the test waits for stops to have started, never for time to pass.
 */
class GatedStopDriver extends HollowDriver {
  inFlight = 0;
  mostAtOnce = 0;
  stops = 0;
  ended = 0;
  private readonly gate: Array<() => void> = [];
  private readonly watchers = new Set<{ check: () => boolean; resolve: () => void }>();

  constructor(
    supervisor: HollowSupervisor,
    private readonly behaviour: { gated?: boolean; fail?: boolean },
  ) {
    super(supervisor, {});
  }

  override async stop(vm: VmLayout): Promise<void> {
    this.stops++;
    this.inFlight++;
    this.mostAtOnce = Math.max(this.mostAtOnce, this.inFlight);
    this.notify();
    try {
      if (this.behaviour.gated) await new Promise<void>((resolve) => this.gate.push(resolve));
      if (this.behaviour.fail) throw new Error('the guest did not power off and QMP did not answer');
      await super.stop(vm);
    } finally {
      this.inFlight--;
      this.ended++;
      this.notify();
    }
  }

  /** Resolves once `check` holds: checked now, and whenever a stop starts or ends. */
  until(check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve) => this.watchers.add({ check, resolve }));
  }

  /** Lets the longest-waiting stop go on. */
  releaseOne(): void {
    this.gate.shift()?.();
  }

  private notify(): void {
    for (const watcher of this.watchers) {
      if (!watcher.check()) continue;
      this.watchers.delete(watcher);
      watcher.resolve();
    }
  }
}

/**
 * Resolves once every operation that can run has run: the fakes do no I/O, so a few turns of the
 * event loop let whatever is not waiting at the gate go as far as it can.
 */
async function settled(): Promise<void> {
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
}

/** The agent's core over fakes, with `count` VMs (one NIC each) running on a gated driver. */
async function hostWithRunningVms(count: number, behaviour: { gated?: boolean; fail?: boolean }) {
  let driver: GatedStopDriver | undefined;
  const host = fakeAgentCore({ driver: (supervisor) => (driver = new GatedStopDriver(supervisor, behaviour)) });
  const ids = Array.from({ length: count }, testVmId);
  for (const id of ids) {
    await host.vms.ensure(id, host.spec());
    await host.vms.act(id, 'start');
  }
  return { ...host, ids, driver: driver as GatedStopDriver };
}

describe('VmService.stopAll (hollow VMs)', () => {
  it('stops every VM, at most `concurrency` at once, then removes every TAP; the folders stay', async () => {
    const host = await hostWithRunningVms(9, { gated: true });
    assert.equal(host.supervisor.processes.size, 9);
    assert.equal(host.network.taps.size, 9);

    const stopping = host.vms.stopAll({ concurrency: 4, timeoutMs: 1000 });
    await host.driver.until(() => host.driver.inFlight === 4);
    await settled();
    assert.equal(host.driver.stops, 4, 'four stops started, and wait at the gate; the other five wait their turn');
    // One at a time: each stop let through (and ended) makes room for exactly one more.
    for (let released = 0; released < 9; released++) {
      await host.driver.until(() => host.driver.ended === released && host.driver.inFlight === Math.min(4, 9 - released));
      host.driver.releaseOne();
    }
    await stopping;

    assert.equal(host.driver.stops, 9, 'each VM got its driver stop');
    assert.equal(host.driver.mostAtOnce, 4, 'four stops ran at once, never more');
    assert.equal(host.supervisor.processes.size, 0, 'no VMM is left');
    assert.deepEqual([...host.network.taps], [], 'no TAP is left');
    for (const id of host.ids) assert.ok(host.store.files.has(host.store.layout(id).specFile), `the folder of VM ${id} stays`);
  });

  it('kills the VMM of a VM whose stop fails, and still removes the TAPs', async () => {
    const host = await hostWithRunningVms(3, { fail: true });

    await host.vms.stopAll({ concurrency: 8, timeoutMs: 1000 });

    assert.equal(host.driver.stops, 3, 'each stop was tried');
    assert.equal(host.supervisor.processes.size, 0, 'the VMMs whose stop failed were killed');
    assert.deepEqual([...host.network.taps], [], 'no TAP is left');
  });

  it('forced, it stops waiting for guests that do not power off: their VMMs are killed and their TAPs removed', async () => {
    const host = await hostWithRunningVms(5, { gated: true });
    const force = new AbortController();

    const stopping = host.vms.stopAll({ concurrency: 2, timeoutMs: 1000, force: force.signal });
    await host.driver.until(() => host.driver.inFlight === 2);
    await settled();
    assert.equal(host.driver.stops, 2, 'two stops wait at the gate (their guests never power off), the other three their turn');
    force.abort();
    await stopping; // the gate is never opened: only the force ends it

    assert.equal(host.driver.stops, 2, 'no further stop was started once forced');
    assert.equal(host.supervisor.processes.size, 0, 'every VMM was killed');
    assert.deepEqual([...host.network.taps], [], 'no TAP is left');
  });

  it('with no VM running, it only removes the TAPs of the VM folders', async () => {
    const host = await hostWithRunningVms(2, {});
    for (const id of host.ids) await host.vms.act(id, 'stop');
    host.driver.stops = 0;

    await host.vms.stopAll({ concurrency: 8, timeoutMs: 1000 });

    assert.equal(host.driver.stops, 0, 'nothing to stop');
    assert.deepEqual([...host.network.taps], [], `no TAP is left (had ${host.ids.map(tapNameOf).join(', ')})`);
  });
});
