import type { Logger } from 'pino';
import { devicesOf } from '../steps/network-steps.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { ProcessIdentity } from '../../kit/process-identity.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { HostSweeper } from '../ports/host-sweeper.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import type { VmStore } from '../ports/vm-store.js';
import type { VmmProcessFinder } from '../ports/vmm-processes.js';

/** What of a run dir is still on the host, beside its VM folders. */
export interface HostLeftovers {
  /** Pids of the VMMs still running from it. */
  vmms: number[];
  /** The guest network a tear-down would remove, each named for a message (`TAP tap-…`, `bridge …`, the NAT). */
  network: string[];
}

/**
 * Ends everything a run dir has on the host except its VM folders (disks included, they stay for
 * the next start): every VMM running from it, killed by pid (those the pid files name, and strays
 * found in /proc, only ever by their command line naming `<run-dir>/vms/<id>/` or their root
 * being one of its jails), each VM's pid file and cgroup, then the guest network (TAPs, and the
 * bridge and its NAT once nothing else uses them). For an agent whose VMs end with it: the last
 * step of `VmService.stopAll` (after the guests had their chance to power off, or at once when
 * forced), and what `nexus dev` runs itself when its agent ended without doing it.
 */
export class HostSweep implements HostSweeper {
  constructor(
    private readonly store: VmStore,
    private readonly processes: VmmProcessFinder,
    private readonly supervisor: ProcessSupervisor,
    private readonly network: HostNetwork,
    private readonly log: Logger,
  ) {}

  /** The VMMs running from the run dir's VM folders: those their pid files name, and the strays /proc shows. */
  async runningVmms(): Promise<ProcessIdentity[]> {
    const found = new Map<number, ProcessIdentity>();
    for (const id of await this.store.ids()) {
      const process = await this.supervisor.adopt(this.store.layout(id));
      if (process) found.set(process.pid, process);
    }
    for (const stray of await this.processes.scan()) {
      if (found.has(stray.pid)) continue;
      const process = await this.processes.identify(stray.pid);
      if (process) found.set(stray.pid, process);
    }
    return [...found.values()];
  }

  /** What is left of the run dir on the host: nothing, once a sweep (or a clean stop of every VM) is done. */
  async leftovers(): Promise<HostLeftovers> {
    const vmms = (await this.runningVmms()).map((process) => process.pid);
    return { vmms, network: await this.network.tearDownLeft(await this.devices()) };
  }

  /** Kills every VMM of the run dir, forgets their pid files and cgroups, removes the guest network. Answers how many VMMs it killed. */
  async sweep(): Promise<number> {
    const killed = await this.killVmms();
    for (const id of await this.store.ids()) {
      const vm = this.store.layout(id);
      if (!(await this.supervisor.adopt(vm))) await this.supervisor.forget(vm);
    }
    await this.network.tearDown(await this.devices());
    return killed;
  }

  /** SIGKILLs, by pid, every VMM still running from the run dir, until none is left. */
  private async killVmms(): Promise<number> {
    const killed = new Set<number>();
    for (let round = 1; ; round++) {
      const left = await this.runningVmms();
      if (left.length === 0) return killed.size;
      const pids = left.map((process) => process.pid);
      if (round > 3) {
        throw new NexusError('vmm_failed', `VMM processes survived SIGKILL: pids ${pids.join(', ')}`, {
          suggestion: 'A process blocked in the kernel (state D in ps) ends when its I/O does.',
        });
      }
      this.log.warn({ pids }, 'killing the VMMs still running');
      await Promise.all(
        left.map(async (process) => {
          await this.supervisor.signal(process, 'SIGKILL');
          await this.supervisor.waitForExit(process, 5000);
          killed.add(process.pid);
        }),
      );
    }
  }

  private async devices(): Promise<string[]> {
    return (await this.store.ids()).flatMap(devicesOf);
  }
}
