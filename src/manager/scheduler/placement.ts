/** A host as placement sees it: what it has, and what its VMs already take. */
export interface HostLoad {
  hostId: string;
  name: string;
  vcpus: number;
  memoryMib: number;
  allocatedVcpus: number;
  allocatedMemoryMib: number;
}

export interface PlacementRequest {
  vcpu: number;
  memMib: number;
}

export type Placement = { ok: true; hostId: string } | { ok: false; reason: 'no_capacity'; message: string };

/**
 * Picks the host for a new VM: memory is a hard cap, vCPUs may be overcommitted by
 * `vcpuOvercommit`; among the hosts that fit, the least loaded by memory wins (then by name, so
 * the choice is stable). Pure: the caller brings ready hosts and their allocations.
 */
export function placeVm(request: PlacementRequest, hosts: readonly HostLoad[], vcpuOvercommit: number): Placement {
  const fits = hosts.filter(
    (host) =>
      host.allocatedMemoryMib + request.memMib <= host.memoryMib && host.allocatedVcpus + request.vcpu <= host.vcpus * vcpuOvercommit,
  );
  if (fits.length === 0) {
    const biggest = [...hosts].sort((a, b) => freeMemory(b) - freeMemory(a))[0];
    const message = biggest
      ? `no ready host has ${request.memMib} MiB and ${request.vcpu} vCPU free; the biggest free host is ${biggest.name} with ${freeMemory(biggest)} MiB and ${Math.max(0, biggest.vcpus * vcpuOvercommit - biggest.allocatedVcpus)} vCPU`
      : 'no host is ready';
    return { ok: false, reason: 'no_capacity', message };
  }
  const load = (host: HostLoad) => (host.allocatedMemoryMib + request.memMib) / host.memoryMib;
  const chosen = [...fits].sort((a, b) => load(a) - load(b) || a.name.localeCompare(b.name))[0];
  return { ok: true, hostId: chosen?.hostId ?? '' };
}

function freeMemory(host: HostLoad): number {
  return Math.max(0, host.memoryMib - host.allocatedMemoryMib);
}
