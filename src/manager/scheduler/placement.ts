/** A host as placement sees it: what it has, and what its VMs already take. */
export interface HostLoad {
  hostId: string;
  name: string;
  vcpus: number;
  memoryMib: number;
  allocatedVcpus: number;
  allocatedMemoryMib: number;
  /** The images the host holds (ids); only needed when the request names images. */
  imageIds?: ReadonlySet<string>;
  /** The host ports other VMs hold there, by name (`8080/tcp`), and by whom; only needed when the request publishes ports. */
  takenPorts?: ReadonlyMap<string, string>;
}

export interface PlacementRequest {
  vcpu: number;
  memMib: number;
  /** Image ids the VM boots from: only a host holding every one of them can run it. */
  imageIds?: readonly string[];
  /** Host ports it publishes (`8080/tcp`): only a host where all are free can run it. */
  ports?: readonly string[];
}

export type Placement = { ok: true; hostId: string } | { ok: false; reason: 'no_capacity' | 'image_unavailable' | 'port_unavailable'; message: string };

/**
 * Picks the host for a new VM: memory is a hard cap, vCPUs may be overcommitted by
 * `vcpuOvercommit`; among the hosts that fit, the least loaded by memory wins (then by name, so
 * the choice is stable). A VM made from images goes only where all of them are, and one that
 * publishes host ports only where none of them is taken. Pure: the caller brings ready hosts and their allocations.
 */
export function placeVm(request: PlacementRequest, allHosts: readonly HostLoad[], vcpuOvercommit: number): Placement {
  const needed = request.imageIds ?? [];
  const holding = allHosts.filter((host) => needed.every((id) => host.imageIds?.has(id)));
  if (holding.length === 0 && allHosts.length > 0) {
    const missing = needed.filter((id) => !allHosts.some((host) => host.imageIds?.has(id)));
    const message = missing.length > 0 ? `no ready host holds image ${missing.join(', ')}` : `no ready host holds all of images ${needed.join(', ')} at once`;
    return { ok: false, reason: 'image_unavailable', message };
  }
  const ports = request.ports ?? [];
  const hosts = holding.filter((host) => ports.every((port) => !host.takenPorts?.has(port)));
  if (hosts.length === 0 && holding.length > 0) {
    const taken = holding.flatMap((host) =>
      ports.flatMap((port) => (host.takenPorts?.has(port) ? [`${port} by ${host.takenPorts.get(port)} on ${host.name}`] : [])),
    );
    return { ok: false, reason: 'port_unavailable', message: `no ready host has every port it publishes free: ${taken.join('; ')}` };
  }
  const fits = hosts.filter(
    (host) => host.allocatedMemoryMib + request.memMib <= host.memoryMib && host.allocatedVcpus + request.vcpu <= host.vcpus * vcpuOvercommit,
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
