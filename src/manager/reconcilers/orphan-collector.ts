import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CollectOrphansRequest } from '../../contracts/agent-vm-api.js';
import type { Clock } from '../../kit/clock.js';
import { messageOf } from '../../kit/nexus-error.js';
import { PeriodicTask } from '../../kit/periodic-task.js';
import { type AgentGateway, type AgentTarget, agentTargetOf } from '../ports/agent-gateway.js';
import type { HostRepo } from '../ports/host-repo.js';
import type { Leadership } from '../ports/leadership.js';
import type { VmRepo } from '../ports/vm-repo.js';

export interface OrphanCollectorConfig {
  /** A leftover is removed once it has been seen, continuously, for this long. Default 60 s. */
  graceMs: number;
  /** How often every ready host's inventory is read. */
  everyMs: number;
}

type OrphanKind = 'vm' | 'dir' | 'tap' | 'process' | 'socket';

/**
 * Garbage-collects what agents report that belongs to no VM row: VM folders the manager does not
 * know, stray folders, TAPs, VMM processes and sockets. Each must be seen for the whole grace
 * period before it goes (a VM being created is never mistaken for a leftover), and the agent
 * removes only what is still an orphan when asked. Every removal is logged and counted.
 */
export class OrphanCollector {
  private readonly firstSeen = new Map<string, number>();
  private readonly loop: PeriodicTask;
  private readonly removed: Counter<'kind'>;

  constructor(
    private readonly hosts: HostRepo,
    private readonly vms: VmRepo,
    private readonly agents: AgentGateway,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: OrphanCollectorConfig,
    private readonly leadership: Leadership,
    registry: Registry,
  ) {
    this.removed = new Counter({
      name: 'nexus_manager_orphans_removed_total',
      help: 'Host leftovers (TAPs, sockets, run dirs, VMM processes, unknown VMs) removed by garbage collection',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.loop = new PeriodicTask(config.everyMs, () => this.sweep(), (error) =>
      this.log.warn({ err: messageOf(error) }, 'orphan collection failed; it runs again next period'),
    );
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async sweep(): Promise<void> {
    if (!this.leadership.isLeader()) return;
    const known = new Set(await this.vms.ids());
    const seenNow = new Set<string>();
    for (const host of (await this.hosts.list()).filter((entry) => entry.status === 'ready')) {
      const target = agentTargetOf(host);
      try {
        await this.sweepHost(target, known, seenNow);
      } catch (error) {
        this.log.warn({ host_id: host.id, err: messageOf(error) }, 'orphan collection skipped a host');
      }
    }
    for (const key of this.firstSeen.keys()) if (!seenNow.has(key)) this.firstSeen.delete(key);
  }

  private async sweepHost(target: AgentTarget, known: Set<string>, seenNow: Set<string>): Promise<void> {
    const inventory = await this.agents.inventory(target);
    const due = (kind: OrphanKind, value: string | number): boolean => {
      const key = `${target.hostId}|${kind}|${value}`;
      seenNow.add(key);
      const now = this.clock.now().getTime();
      const first = this.firstSeen.get(key) ?? now;
      this.firstSeen.set(key, first);
      return now - first >= this.config.graceMs;
    };
    for (const vm of inventory.vms) {
      if (known.has(vm.id) || !due('vm', vm.id)) continue;
      await this.agents.deleteVm(target, vm.id);
      this.count(target, 'vm', [vm.id]);
    }
    const request: CollectOrphansRequest = {
      processes: inventory.orphans.processes.filter((entry) => !known.has(entry.vm_id) && due('process', entry.pid)).map((entry) => entry.pid),
      taps: inventory.orphans.taps.filter((tap) => due('tap', tap)),
      sockets: inventory.orphans.sockets.filter((socket) => due('socket', socket)),
      dirs: inventory.orphans.dirs.filter((dir) => due('dir', dir)),
    };
    if (Object.values(request).every((list) => list.length === 0)) return;
    const removed = await this.agents.collectOrphans(target, request);
    this.count(target, 'process', removed.processes.map(String));
    this.count(target, 'tap', removed.taps);
    this.count(target, 'socket', removed.sockets);
    this.count(target, 'dir', removed.dirs);
  }

  private count(target: AgentTarget, kind: OrphanKind, values: string[]): void {
    for (const value of values) {
      this.removed.inc({ kind });
      this.log.info({ event: 'orphan_removed', host_id: target.hostId, kind, resource: value }, `removed an orphan ${kind}`);
      this.firstSeen.delete(`${target.hostId}|${kind}|${value}`);
    }
  }
}
