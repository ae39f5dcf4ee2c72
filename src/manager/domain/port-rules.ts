import { FIRST_UNPRIVILEGED_PORT, type PublishedPort, type VmPort } from '../../contracts/network-api.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { PortHolder, StoredVmSpec } from '../ports/vm-repo.js';

export type StoredPort = NonNullable<StoredVmSpec['ports']>[number];

/** `8080/tcp`: how a host port is named in messages. */
export function portName(port: { protocol: string; hostPort: number }): string {
  return `${port.hostPort}/${port.protocol}`;
}

/**
 * The ports a new VM publishes, checked and with their protocol filled in: each host port and
 * protocol once, only on a VM with a NIC, and below 1024 only for an admin.
 */
export function checkPorts(ports: readonly PublishedPort[], vm: { hasNic: boolean; callerIsAdmin: boolean }): StoredPort[] {
  if (ports.length > 0 && !vm.hasNic) {
    throw new NexusError('validation_failed', 'ports need a NIC: this VM has none (nic: false, or networks: [])', {
      suggestion: 'Give it a NIC, or drop the ports.',
    });
  }
  const checked = ports.map((port) => ({ host_port: port.host_port, guest_port: port.guest_port, protocol: port.protocol ?? 'tcp' }));
  const seen = new Set<string>();
  for (const port of checked) {
    const name = portName({ protocol: port.protocol, hostPort: port.host_port });
    if (seen.has(name))
      throw new NexusError('validation_failed', `ports: host port ${name} is published twice`, { suggestion: 'Publish each host port once.' });
    seen.add(name);
    if (port.host_port < FIRST_UNPRIVILEGED_PORT && !vm.callerIsAdmin) {
      throw new NexusError('forbidden', `ports: host port ${name} is below ${FIRST_UNPRIVILEGED_PORT}, which only an admin may publish`, {
        suggestion: `Publish it on a host port of ${FIRST_UNPRIVILEGED_PORT} or more, or ask an admin.`,
      });
    }
  }
  return checked;
}

/** Who holds a port, as a caller of `project` may be told: a VM of its own project by name, any other not. */
export function holderName(holder: PortHolder, project: string): string {
  return holder.project === project ? `VM ${holder.vmName} (${holder.vmId})` : 'a VM of another project';
}

/**
 * Whether a VM of `project` publishing `ports` can be placed anywhere: a 409 naming the holders
 * (those of its own project) when, on every ready host, another VM already holds one of them.
 * (Placement then picks a host where all are free; one placed meanwhile is caught there.)
 */
export function refuseTakenPorts(
  ports: readonly StoredPort[],
  holders: readonly PortHolder[],
  readyHosts: ReadonlyArray<{ id: string; name: string }>,
  project: string,
): void {
  if (ports.length === 0 || readyHosts.length === 0) return;
  const blocking = readyHosts.map((host) => holders.find((holder) => holder.hostId === host.id));
  if (blocking.some((holder) => holder === undefined)) return;
  const named = blocking.map(
    (holder, index) => `${portName(holder as PortHolder)} by ${holderName(holder as PortHolder, project)} on host ${readyHosts[index]?.name}`,
  );
  throw new NexusError('conflict', `host port ${named.length === 1 ? 'taken' : 'taken on every ready host'}: ${named.join('; ')}`, {
    suggestion: 'Publish another host port, or delete the VM that holds it.',
  });
}

/** The VM answer's ports: where each is reachable once the VM is on a host (`address` is the host's agent address, `host:port`). */
export function shownPorts(ports: readonly StoredPort[], hostAddress: string | undefined): VmPort[] {
  const host = hostAddress === undefined ? undefined : hostOf(hostAddress);
  return ports.map((port) => ({ ...port, reachable_at: host === undefined ? null : `${host}:${port.host_port}` }));
}

function hostOf(address: string): string | undefined {
  try {
    return new URL(`http://${address}`).hostname;
  } catch {
    return undefined;
  }
}
