import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomically } from '../../../kit/atomic-file.js';
import { formatIpv4, maskOf, parseIpv4Block } from '../../../kit/ipv4.js';
import { runHostTool } from '../../../kit/host-tool.js';
import { NexusError } from '../../../kit/nexus-error.js';
import { readProcessStartTicks } from '../../../kit/process-identity.js';

/** A static lease: the one address a NIC's MAC is given. */
export interface StaticLease {
  mac: string;
  ip: string;
}

/** What a network's DHCP server hands out besides the address. */
export interface DhcpNetwork {
  id: string;
  cidr: string;
  dns: readonly string[];
}

/** What a network's server serves, kept beside it: enough to restart it with a lease more or less. */
interface ServerState {
  network: DhcpNetwork;
  bridge: string;
  /** By TAP name. */
  leases: Record<string, StaticLease>;
}

/**
 * One DHCP server per network on a host: dnsmasq, bound to the network's bridge alone, with static
 * leases only (each NIC's MAC to the address the manager's IPAM gave it: a guest that asks for an
 * address gets that one, and an unknown MAC gets none), its DNS server off (`--port=0`), reading no
 * configuration of the host's (`--conf-file=/dev/null`, no resolv.conf, no /etc/hosts) and writing no
 * lease file. It daemonizes, so it outlives an agent restart, as VMMs do; its pid file, its log
 * and its leases (by TAP) live in `<dir>/<network id>/`. Call holding the network's bridge.
 */
export class DhcpServers {
  constructor(
    /** The agent's own directory for them, e.g. `<run-dir>/net/dhcp`. */
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Adds (or replaces) the lease of one NIC, by its TAP, and serves the network's leases on `bridge`. */
  async addLease(network: DhcpNetwork, bridge: string, tap: string, lease: StaticLease): Promise<void> {
    const state = (await this.stateOf(network.id)) ?? { network, bridge, leases: {} };
    await this.serve({ network: { id: network.id, cidr: network.cidr, dns: [...network.dns] }, bridge, leases: { ...state.leases, [tap]: lease } });
  }

  /** Drops the lease of one NIC; a running server restarts with the rest (and stops with none left). */
  async removeLease(networkId: string, tap: string): Promise<void> {
    const state = await this.stateOf(networkId);
    if (!state || !(tap in state.leases)) return;
    const leases = Object.fromEntries(Object.entries(state.leases).filter(([name]) => name !== tap));
    if (Object.keys(leases).length === 0) return this.stop(networkId);
    await this.serve({ ...state, leases });
  }

  /** The networks whose servers have files here (running or not). */
  async networkIds(): Promise<string[]> {
    return readdir(this.dir).catch(() => []);
  }

  /**
   * (Re)starts the network's server with exactly these leases, given on its command line: dnsmasq
   * drops root before it reads any file, and a run dir need not be open to others. A restart takes
   * milliseconds; a client asking meanwhile asks again.
   */
  private async serve(state: ServerState): Promise<void> {
    const { network, bridge, leases } = state;
    const files = this.filesOf(network.id);
    await mkdir(files.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomically(files.state, JSON.stringify(state), 0o600);
    await this.end(network.id);
    const block = parseIpv4Block(network.cidr);
    if (!block) throw new NexusError('bad_request', `network ${network.id}: '${network.cidr}' is not a network block`);
    const mask = formatIpv4(maskOf(block.prefixLength));
    await runHostTool(
      'dnsmasq',
      [
        '--conf-file=/dev/null',
        `--pid-file=${files.pid}`,
        `--interface=${bridge}`,
        '--bind-interfaces',
        '--except-interface=lo',
        '--port=0',
        '--no-resolv',
        '--no-hosts',
        '--leasefile-ro',
        '--dhcp-authoritative',
        `--dhcp-range=${formatIpv4(block.base)},static,${mask},1h`,
        ...Object.values(leases).map((lease) => `--dhcp-host=${lease.mac},${lease.ip}`),
        `--dhcp-option=option:router,${formatIpv4(block.base + 1)}`,
        ...(network.dns.length > 0 ? [`--dhcp-option=option:dns-server,${network.dns.join(',')}`] : []),
        `--log-facility=${files.log}`,
      ],
      { doing: `starting the DHCP server of network ${network.id} on ${bridge}` },
    );
    this.log.debug({ network: network.id, bridge, leases: Object.keys(leases).length }, 'DHCP server (re)started');
  }

  private async stateOf(networkId: string): Promise<ServerState | undefined> {
    const text = await readFile(this.filesOf(networkId).state, 'utf8').catch(() => undefined);
    return text === undefined ? undefined : (JSON.parse(text) as ServerState);
  }

  /** Stops the network's server, if one runs, and removes its files. */
  async stop(networkId: string): Promise<void> {
    await this.end(networkId);
    await rm(this.filesOf(networkId).dir, { recursive: true, force: true });
  }

  /** Ends the network's server, if one runs: SIGTERM, then SIGKILL after 5 s. */
  private async end(networkId: string): Promise<void> {
    const pid = await this.pidOf(networkId);
    if (pid === undefined) return;
    process.kill(pid, 'SIGTERM');
    for (let waited = 0; waited < 5000 && (await isRunning(pid)); waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
    if (await isRunning(pid)) process.kill(pid, 'SIGKILL');
  }

  /**
   * The pid of the network's running server: the one its pid file names, if that process is
   * dnsmasq writing this very pid file (a recycled pid is someone else's).
   */
  async pidOf(networkId: string): Promise<number | undefined> {
    const files = this.filesOf(networkId);
    const pid = Number((await readFile(files.pid, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return command.split('\0').includes(`--pid-file=${files.pid}`) ? pid : undefined;
  }

  private filesOf(networkId: string) {
    const dir = join(this.dir, networkId);
    return { dir, pid: join(dir, 'dnsmasq.pid'), state: join(dir, 'server.json'), log: join(dir, 'dnsmasq.log') };
  }
}

/** Whether the process still runs: an exited one waiting to be reaped (its parent is init) does not. */
async function isRunning(pid: number): Promise<boolean> {
  return (await readProcessStartTicks(pid)) !== undefined;
}
