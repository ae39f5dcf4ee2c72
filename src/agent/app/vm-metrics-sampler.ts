import type { VmMetricsRecord } from '../../contracts/observe-api.js';
import type { VmContext } from './vm-context.js';
import { GUEST_TAP } from '../../contracts/host-names.js';
import { hostDeviceOf, networkNicOf } from '../steps/network-steps.js';

/** Each running VM's usage, sampled into its folder: what the metrics API and the fleet view read. */
export class VmMetricsSampler {
  constructor(private readonly ctx: VmContext) {}

  /**
   * Appends one metrics record for every VM whose VMM runs: the VMM's block counters, the
   * process's CPU time and memory, the counters of its TAP (or its namespace's veth). A VM that stops meanwhile is skipped.
   */
  async sample(): Promise<number> {
    const { store, supervisor, counters } = this.ctx.ports;
    let sampled = 0;
    for (const id of await store.ids()) {
      const vm = store.layout(id);
      try {
        const stored = await store.read(vm);
        const process = stored && (await supervisor.adopt(vm));
        const driver = stored && this.ctx.drivers.drivers.get(stored.driver);
        if (!stored || !process || !driver) continue;
        const [vmm, usage, net] = await Promise.all([
          driver.sampleMetrics(vm),
          counters.processUsage(process.pid),
          // A VM on a network: its tap0, in the namespace its VMM runs in.
          networkNicOf(id, stored.spec) ? counters.guestNet(GUEST_TAP, process.pid) : counters.guestNet(hostDeviceOf(id, stored.spec)),
        ]);
        if (!usage) continue;
        await store.appendMetrics(vm, {
          at: this.ctx.now().toISOString(),
          vmm: stored.driver,
          vcpu_seconds: usage.cpuSeconds,
          rss_bytes: usage.rssBytes,
          block: vmm.block,
          net,
          raw: vmm.raw,
        });
        sampled++;
      } catch (error) {
        // Stopping, or not answering for a moment: the next round samples it again.
        this.ctx.log.debug({ err: error, vm_id: id }, 'could not sample VM metrics');
      }
    }
    return sampled;
  }

  /** The VM's metrics records of the last `seconds`; a VM the agent does not have is a 404. */
  async recent(id: string, seconds: number): Promise<VmMetricsRecord[]> {
    const vm = this.ctx.ports.store.layout(id);
    await this.ctx.requireStored(vm);
    return this.ctx.ports.store.recentMetrics(vm, seconds, this.ctx.now());
  }
}
