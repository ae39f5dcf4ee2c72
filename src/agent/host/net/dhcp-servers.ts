import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { formatIpv4, parseIpv4Block } from '../../../kit/ipv4.js';
import { runHostTool } from '../../../kit/host-tool.js';
import { NexusError } from '../../../kit/nexus-error.js';

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

/**
 * One DHCP server per network on a host: dnsmasq, bound to the network's bridge alone, with static
 * leases only (each NIC's MAC to the address the manager's IPAM gave it: a guest that asks for an
 * address gets that one, and an unknown MAC gets none), its DNS server off (`--port=0`), reading no
 * configuration of the host's (`--conf-file=/dev/null`, no resolv.conf, no /etc/hosts) and writing no
 * lease file. It daemonizes, so it outlives an agent restart, as VMMs do; its pid file and its
 * hosts file live in `<dir>/<network id>/`. Call holding the network's bridge.
 */
export class DhcpServers {
  constructor(
    /** The agent's own directory for them, e.g. `<run-dir>/net/dhcp`. */
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Serves `leases` on `bridge`: starts the server, or has a running one re-read its leases. */
  async serve(network: DhcpNetwork, bridge: string, leases: readonly StaticLease[]): Promise<void> {
    const files = this.filesOf(network.id);
    await mkdir(files.dir, { recursive: true, mode: 0o755 });
    // dnsmasq reads it after dropping root: world-readable, as the addresses are no secret on the host.
    await writeFile(files.hosts, leases.map((lease) => `${lease.mac},${lease.ip}\n`).join(''), { mode: 0o644 });
    const pid = await this.pidOf(network.id);
    if (pid !== undefined) {
      process.kill(pid, 'SIGHUP');
      return;
    }
    const block = parseIpv4Block(network.cidr);
    if (!block) throw new NexusError('bad_request', `network ${network.id}: '${network.cidr}' is not a network block`);
    const mask = formatIpv4(block.prefixLength === 0 ? 0 : (0xffffffff << (32 - block.prefixLength)) >>> 0);
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
        `--dhcp-hostsfile=${files.hosts}`,
        `--dhcp-option=option:router,${formatIpv4(block.base + 1)}`,
        ...(network.dns.length > 0 ? [`--dhcp-option=option:dns-server,${network.dns.join(',')}`] : []),
        `--log-facility=${files.log}`,
      ],
      { doing: `starting the DHCP server of network ${network.id} on ${bridge}` },
    );
    this.log.info({ network: network.id, bridge, pid: await this.pidOf(network.id) }, 'DHCP server started');
  }

  /** Stops the network's server, if one runs, and removes its files. */
  async stop(networkId: string): Promise<void> {
    const pid = await this.pidOf(networkId);
    if (pid !== undefined) {
      process.kill(pid, 'SIGTERM');
      for (let waited = 0; waited < 5000 && isRunning(pid); waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
      if (isRunning(pid)) process.kill(pid, 'SIGKILL');
      this.log.info({ network: networkId, pid }, 'DHCP server stopped');
    }
    await rm(this.filesOf(networkId).dir, { recursive: true, force: true });
  }

  /**
   * The pid of the network's running server: the one its pid file names, if that process is
   * dnsmasq serving this very hosts file (a recycled pid is someone else's).
   */
  async pidOf(networkId: string): Promise<number | undefined> {
    const files = this.filesOf(networkId);
    const pid = Number((await readFile(files.pid, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return command.split('\0').includes(`--dhcp-hostsfile=${files.hosts}`) ? pid : undefined;
  }

  private filesOf(networkId: string) {
    const dir = join(this.dir, networkId);
    return { dir, pid: join(dir, 'dnsmasq.pid'), hosts: join(dir, 'hosts'), log: join(dir, 'dnsmasq.log') };
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
