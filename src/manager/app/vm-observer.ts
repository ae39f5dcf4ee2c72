import type { Readable } from 'node:stream';
import type { LogPathTailQuery, LogStreamQuery, LogTail, LogTailQuery, MetricsRecent, MetricsWindowQuery } from '../../contracts/observe-api.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { HostRepo } from '../ports/host-repo.js';
import type { Principal } from '../domain/access-policy.js';
import { type AgentGateway, agentTargetOf } from '../ports/agent-gateway.js';
import type { VmManager } from './vm-manager.js';

/**
 * What a VM is doing, read from its host: logs, followed logs. The manager relays from the VM's
 * agent, so a client never needs to reach an agent itself.
 */
export class VmObserver {
  constructor(
    private readonly vms: Pick<VmManager, 'placement'>,
    private readonly agents: Pick<AgentGateway, 'vmLogs' | 'streamVmLogs' | 'tailFile' | 'vmMetrics'>,
    private readonly hosts: Pick<HostRepo, 'list'>,
  ) {}

  /**
   * Dev mode's tail of a log by path, on the host named or the only one. The agent refuses any
   * path outside its VM folders (403).
   */
  async tailFile(query: LogPathTailQuery): Promise<LogTail> {
    const hosts = await this.hosts.list();
    const host = query.host_id ? hosts.find((candidate) => candidate.id === query.host_id) : hosts.length === 1 ? hosts[0] : undefined;
    if (!host) {
      throw query.host_id
        ? new NexusError('not_found', `no host ${query.host_id}`, { suggestion: 'GET /v1/hosts lists the hosts.' })
        : new NexusError('bad_request', `there are ${hosts.length} hosts: say whose file it is with host_id`, { suggestion: 'GET /v1/hosts lists the hosts.' });
    }
    return this.agents.tailFile(agentTargetOf(host), { path: query.path, tail: query.tail });
  }

  async logs(id: string, caller: Principal, query: LogTailQuery): Promise<LogTail> {
    const { host } = await this.vms.placement(id, caller);
    return this.agents.vmLogs(agentTargetOf(host), id, query);
  }

  async metrics(id: string, caller: Principal, query: MetricsWindowQuery): Promise<MetricsRecent> {
    const { host } = await this.vms.placement(id, caller);
    return this.agents.vmMetrics(agentTargetOf(host), id, query);
  }

  async streamLogs(id: string, caller: Principal, query: LogStreamQuery, lastEventId: string | undefined, signal: AbortSignal): Promise<Readable> {
    const { host } = await this.vms.placement(id, caller);
    return this.agents.streamVmLogs(agentTargetOf(host), id, query, lastEventId, signal);
  }
}
