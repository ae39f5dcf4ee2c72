import type { AgentVm, CollectOrphansRequest, CollectOrphansResponse, Inventory } from '../../contracts/agent-vm-api.js';
import { VM_ID_PATTERN } from '../../contracts/vm-layout.js';
import type { VmContext } from './vm-context.js';
import { devicesOf } from '../steps/network-steps.js';
import { snapshotLock } from './vm-snapshots.js';

/**
 * What is on the host and what of it belongs to no VM: the inventory the manager's garbage
 * collection reads, and the removal of the leftovers it names.
 */
export class VmLeftovers {
  constructor(
    private readonly ctx: VmContext,
    /** Told what a collection removed, for the agent's metrics. */
    private readonly onRemoved: (removed: CollectOrphansResponse['removed']) => void = () => undefined,
  ) {}

  /** Every VM folder on the host, and what belongs to no VM (for the manager's garbage collection). */
  async inventory(): Promise<Inventory> {
    const { store, network, supervisor, processes } = this.ctx.ports;
    const listing = await store.listing();
    const vms: AgentVm[] = [];
    // Only a folder with no spec at all is an orphan: an unreadable VM is reported by its error, never collected.
    const orphans: Inventory['orphans'] = { dirs: [...listing.strays], taps: [], processes: [], sockets: [] };
    for (const id of listing.vms) {
      try {
        const vm = await this.ctx.withVm(id, (layout) => this.ctx.describe(layout));
        vms.push(vm);
        if (vm.pid === null && (await store.exists(vm.api_socket))) orphans.sockets.push(vm.api_socket);
      } catch (error) {
        this.ctx.log.error({ err: error, vm_id: id }, 'a VM folder could not be read; it is left alone');
      }
    }
    const own = new Set((await store.ids()).flatMap(devicesOf));
    orphans.taps = (await network.listDevices()).filter((device) => !own.has(device));
    for (const process of await processes.scan()) {
      if (!VM_ID_PATTERN.test(process.vmId)) continue;
      // Re-read the pid file now: a VMM started since the listing above is not an orphan.
      const recorded = await supervisor.adopt(store.layout(process.vmId));
      if (recorded?.pid !== process.pid) orphans.processes.push({ pid: process.pid, vm_id: process.vmId, command: process.command });
    }
    // What drivers made outside VM folders (jails) for VMs that have no folder now.
    for (const driver of new Set(this.ctx.drivers.drivers.values())) {
      orphans.dirs.push(...((await driver.leftoverDirs?.((vmId) => store.hasFolder(store.layout(vmId)))) ?? []));
    }
    return { vms, snapshots: await store.snapshotIds(), orphans };
  }

  /**
   * Removes leftovers the manager names, in a fixed order (VMM processes, TAPs, sockets, folders,
   * snapshots), but only those the inventory still reports as orphans now: a resource that became
   * a VM's in the meantime is left alone.
   */
  async collectOrphans(request: CollectOrphansRequest): Promise<CollectOrphansResponse['removed']> {
    const { store, network, supervisor, processes } = this.ctx.ports;
    const { orphans, snapshots } = await this.inventory();
    const removed: CollectOrphansResponse['removed'] = { dirs: [], taps: [], processes: [], sockets: [], snapshots: [] };
    for (const pid of request.processes) {
      if (!orphans.processes.some((entry) => entry.pid === pid)) continue;
      const process = await processes.identify(pid);
      if (process === undefined) continue;
      await supervisor.signal(process, 'SIGKILL');
      if (await supervisor.waitForExit(process, 5000)) removed.processes.push(pid);
    }
    for (const tap of request.taps.filter((name) => orphans.taps.includes(name))) {
      await network.removeDevice(tap);
      removed.taps.push(tap);
    }
    for (const socket of request.sockets.filter((path) => orphans.sockets.includes(path))) {
      await store.remove(socket);
      removed.sockets.push(socket);
    }
    for (const dir of request.dirs.filter((path) => orphans.dirs.includes(path))) {
      await store.remove(dir);
      removed.dirs.push(dir);
    }
    // Which snapshots have no row is the manager's to know; a take of one under way finishes first.
    for (const id of request.snapshots.filter((each) => snapshots.includes(each))) {
      await this.ctx.locks.run(snapshotLock(id), () => store.remove(store.snapshotLayout(id).dir));
      removed.snapshots.push(id);
    }
    if (Object.values(removed).some((list) => list.length > 0)) this.ctx.log.info({ removed }, 'orphans removed');
    this.onRemoved(removed);
    return removed;
  }
}
