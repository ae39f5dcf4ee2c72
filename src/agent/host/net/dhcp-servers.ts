import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { netnsPathOf } from '../../../contracts/host-names.js';
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

/**
 * One DHCP server per VM on a network, inside the VM's namespace: dnsmasq, bound to the namespace's
 * TAP alone, with one static lease (the NIC's MAC to the address the guest is to have: a guest that
 * asks gets that one, and an unknown MAC gets none), its DNS server off (`--port=0`), reading no
 * configuration of the host's (`--conf-file=/dev/null`, no resolv.conf, no /etc/hosts) and writing
 * no lease file. It daemonizes, so it outlives an agent restart, as VMMs do; its pid file and its log
 * live in `<dir>/<namespace>/`. It never restarts: a VM's lease is fixed for its life.
 */
export class DhcpServers {
  constructor(
    /** The agent's own directory for them, e.g. `<run-dir>/net/dhcp`. */
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /**
   * (Re)starts the server of the namespace `netns`, on its interface `tap`, with this one lease.
   * The lease is given on its command line: dnsmasq drops root before it reads any file, and a run
   * dir need not be open to others.
   */
  async start(netns: string, tap: string, network: DhcpNetwork, lease: StaticLease): Promise<void> {
    const files = this.filesOf(netns);
    await this.end(netns);
    await mkdir(files.dir, { recursive: true, mode: 0o700 });
    const block = parseIpv4Block(network.cidr);
    if (!block) throw new NexusError('bad_request', `network ${network.id}: '${network.cidr}' is not a network block`);
    const mask = formatIpv4(maskOf(block.prefixLength));
    await runHostTool(
      'nsenter',
      [
        `--net=${netnsPathOf(netns)}`,
        '--',
        'dnsmasq',
        '--conf-file=/dev/null',
        `--pid-file=${files.pid}`,
        `--interface=${tap}`,
        '--bind-interfaces',
        '--except-interface=lo',
        '--port=0',
        '--no-resolv',
        '--no-hosts',
        '--leasefile-ro',
        '--dhcp-authoritative',
        `--dhcp-range=${formatIpv4(block.base)},static,${mask},1h`,
        `--dhcp-host=${lease.mac},${lease.ip}`,
        `--dhcp-option=option:router,${formatIpv4(block.base + 1)}`,
        ...(network.dns.length > 0 ? [`--dhcp-option=option:dns-server,${network.dns.join(',')}`] : []),
        `--log-facility=${files.log}`,
      ],
      { doing: `starting the DHCP server of ${netns} (network ${network.id})` },
    );
    this.log.debug({ netns, network: network.id, ip: lease.ip }, 'DHCP server started');
  }

  /** The namespaces whose servers have files here (running or not). */
  async names(): Promise<string[]> {
    return readdir(this.dir).catch(() => []);
  }

  /** Stops the namespace's server, if one runs, and removes its files. */
  async stop(netns: string): Promise<void> {
    await this.end(netns);
    await rm(this.filesOf(netns).dir, { recursive: true, force: true });
  }

  /** Ends the namespace's server, if one runs: SIGTERM, then SIGKILL after 5 s. */
  private async end(netns: string): Promise<void> {
    const pid = await this.pidOf(netns);
    if (pid === undefined) return;
    process.kill(pid, 'SIGTERM');
    for (let waited = 0; waited < 5000 && (await isRunning(pid)); waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
    if (await isRunning(pid)) process.kill(pid, 'SIGKILL');
  }

  /**
   * The pid of the namespace's running server: the one its pid file names, if that process is
   * dnsmasq writing this very pid file (a recycled pid is someone else's).
   */
  async pidOf(netns: string): Promise<number | undefined> {
    const files = this.filesOf(netns);
    const pid = Number((await readFile(files.pid, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return command.split('\0').includes(`--pid-file=${files.pid}`) ? pid : undefined;
  }

  private filesOf(netns: string) {
    const dir = join(this.dir, netns);
    return { dir, pid: join(dir, 'dnsmasq.pid'), log: join(dir, 'dnsmasq.log') };
  }
}

/** Whether the process still runs: an exited one waiting to be reaped (its parent is init) does not. */
async function isRunning(pid: number): Promise<boolean> {
  return (await readProcessStartTicks(pid)) !== undefined;
}
