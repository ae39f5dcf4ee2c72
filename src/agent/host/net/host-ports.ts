import { readFile } from 'node:fs/promises';

/** A host port a VM would publish. */
export interface HostPort {
  host_port: number;
  protocol: 'tcp' | 'udp';
}

/** TCP's LISTEN state in /proc/net/tcp: a socket there takes connections on its port. */
const TCP_LISTEN = '0A';

/**
 * Which of `ports` a process of the host already has a socket on (TCP: listening; UDP: bound),
 * named `8080/tcp`: publishing one would silently take its traffic (DNAT comes first), so the
 * agent refuses it. Read from /proc/net/{tcp,tcp6,udp,udp6}, the agent's (the host's) namespace.
 */
export async function portsInUse(ports: readonly HostPort[]): Promise<string[]> {
  if (ports.length === 0) return [];
  const bound = { tcp: new Set<number>(), udp: new Set<number>() };
  for (const protocol of ['tcp', 'udp'] as const) {
    for (const file of [protocol, `${protocol}6`]) {
      const table = await readFile(`/proc/net/${file}`, 'utf8').catch(() => '');
      for (const line of table.split('\n').slice(1)) {
        const [, local, , state] = line.trim().split(/\s+/);
        const port = Number.parseInt(local?.split(':')[1] ?? '', 16);
        if (Number.isInteger(port) && (protocol === 'udp' || state === TCP_LISTEN)) bound[protocol].add(port);
      }
    }
  }
  return ports.filter((port) => bound[port.protocol].has(port.host_port)).map((port) => `${port.host_port}/${port.protocol}`);
}
