import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CollectOrphansRequest } from '../../contracts/agent-vm-api.js';
import type { Clock } from '../../kit/clock.js';
import { messageOf } from '../../kit/nexus-error.js';
import { PeriodicTask } from '../../kit/periodic-task.js';
import { OrphanSightings } from '../domain/orphan-sightings.js';
import { type AgentGateway, type AgentTarget, agentTargetOf } from '../ports/agent-gateway.js';
import type { HostRepo } from '../ports/host-repo.js';
import type { Leadership } from '../ports/leadership.js';
import type { SnapshotRepo } from '../ports/snapshot-repo.js';
import type { VmRepo } from '../ports/vm-repo.js';

export interface OrphanCollectorConfig {
  /** A leftover is removed once it has been seen, continuously, for this long. Default 60 s. */
  graceMs: number;
  /** How often every ready host's inventory is read. */
  everyMs: number;
}

type OrphanKind = 'vm' | 'dir' | 'tap' | 'process' | 'socket' | 'snapshot';

/**
 * Garbage-collects what agents report that belongs to no VM row: VM folders the manager does not
 * know, stray folders, TAPs, VMM processes, sockets and snapshots without a row. Each must be seen for the whole grace
 * period before it goes (a VM being created is never mistaken for a leftover: the rule is
 * `OrphanSightings`), and the agent removes only what is still an orphan when asked. Every
 * removal is logged and counted.
 */
export class OrphanCollector {
  private readonly sightings: OrphanSightings;
  private readonly loop: PeriodicTask;
  private readonly removed: Counter<'kind'>;

  constructor(
    private readonly hosts: Pick<HostRepo, 'list'>,
    private readonly vms: Pick<VmRepo, 'ids'>,
    private readonly snapshots: Pick<SnapshotRepo, 'ids'>,
    private readonly agents: Pick<AgentGateway, 'inventory' | 'deleteVm' | 'collectOrphans'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: OrphanCollectorConfig,
    private readonly leadership: Pick<Leadership, 'isLeader'>,
    registry: Registry,
  ) {
    this.sightings = new OrphanSightings(config.graceMs);
    this.removed = new Counter({
      name: 'nexus_manager_orphans_removed_total',
      help: 'Host leftovers (TAPs, sockets, run dirs, VMM processes, unknown VMs, snapshots without a row) removed by garbage collection',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.loop = new PeriodicTask(
      config.everyMs,
      () => this.sweep(),
      (error) => this.log.warn({ err: messageOf(error) }, 'orphan collection failed; it runs again next period'),
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
    const snapshots = new Set(await this.snapshots.ids());
    for (const host of (await this.hosts.list()).filter((entry) => entry.status === 'ready')) {
      const target = agentTargetOf(host);
      try {
        await this.sweepHost(target, known, snapshots);
      } catch (error) {
        this.log.warn({ host_id: host.id, err: messageOf(error) }, 'orphan collection skipped a host');
      }
    }
    this.sightings.endSweep();
  }

  private async sweepHost(target: AgentTarget, known: Set<string>, snapshots: Set<string>): Promise<void> {
    const inventory = await this.agents.inventory(target);
    const due = (kind: OrphanKind, value: string | number): boolean => this.sightings.sight(orphanKey(target, kind, value), this.clock.now().getTime());
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
      // A snapshot's row is written before its host is asked to take it: one kept without a row is a leftover.
      snapshots: inventory.snapshots.filter((id) => !snapshots.has(id) && due('snapshot', id)),
    };
    if (Object.values(request).every((list) => list.length === 0)) return;
    const removed = await this.agents.collectOrphans(target, request);
    this.count(target, 'process', removed.processes.map(String));
    this.count(target, 'tap', removed.taps);
    this.count(target, 'socket', removed.sockets);
    this.count(target, 'dir', removed.dirs);
    this.count(target, 'snapshot', removed.snapshots);
  }

  private count(target: AgentTarget, kind: OrphanKind, values: string[]): void {
    for (const value of values) {
      this.removed.inc({ kind });
      this.log.info({ event: 'orphan_removed', host_id: target.hostId, kind, resource: value }, `removed an orphan ${kind}`);
      this.sightings.forget(orphanKey(target, kind, value));
    }
  }
}

/** One leftover, named by its host, kind and name (or pid). */
function orphanKey(target: AgentTarget, kind: OrphanKind, value: string | number): string {
  return `${target.hostId}|${kind}|${value}`;
}
