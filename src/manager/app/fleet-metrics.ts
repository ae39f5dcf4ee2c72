import { Gauge, type Registry } from 'prom-client';
import type { HostRepo } from '../ports/host-repo.js';
import type { VmRepo } from '../ports/vm-repo.js';

/**
 * `nexus_manager_vms{host,state}`: how many VMs each host has in each observed state, read from
 * the database when scraped (host "" for VMs not placed). Also hosts by status.
 */
export function registerFleetMetrics(registry: Registry, vms: Pick<VmRepo, 'stateCounts'>, hosts: Pick<HostRepo, 'list'>): void {
  new Gauge({
    name: 'nexus_manager_vms',
    help: 'VMs by host and observed state',
    labelNames: ['host', 'state'] as const,
    registers: [registry],
    async collect() {
      const [counts, all] = await Promise.all([vms.stateCounts(), hosts.list()]);
      const names = new Map(all.map((host) => [host.id, host.name]));
      this.reset();
      for (const { hostId, state, count } of counts) this.set({ host: hostId ? (names.get(hostId) ?? hostId) : '', state }, count);
    },
  });
  new Gauge({
    name: 'nexus_manager_hosts',
    help: 'Hosts by status',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      const all = await hosts.list();
      this.reset();
      for (const status of ['ready', 'unreachable']) this.set({ status }, all.filter((host) => host.status === status).length);
    },
  });
}
