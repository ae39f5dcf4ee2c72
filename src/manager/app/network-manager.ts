import type { CreateNetworkRequest, Network, NetworkListQuery, UpdateNetworkRequest, VmNetworkRequest } from '../../contracts/network-api.js';
import { UUID_PATTERN } from '../../contracts/schema.js';
import { formatIpv4 } from '../../kit/ipv4.js';
import { NexusError } from '../../kit/nexus-error.js';
import { type Principal, type Verb, decide, visibleProjects } from '../domain/access-policy.js';
import { checkNetworkCidr, networkBlockOf } from '../domain/network-rules.js';
import type { DefaultNetworkPool, NetworkRecord, NetworkRepo } from '../ports/network-repo.js';
import type { NicRequest } from '../ports/vm-repo.js';

/** How many of a network's VMs a refused delete names before it says how many more. */
const NAMED_USERS = 10;

/** Networks behind the API, and the NICs a new VM asks for resolved to networks of its project. */
export class NetworkManager {
  constructor(
    private readonly networks: NetworkRepo,
    private readonly defaults: DefaultNetworkPool,
  ) {}

  async create(request: CreateNetworkRequest, caller: Principal): Promise<Network> {
    const project = request.project ?? caller.project ?? 'default';
    if (decide(caller, 'network', 'write', project) === 'hide') throw new NexusError('not_found', `no project ${project}`);
    checkNetworkCidr(request.cidr);
    const record = await this.networks.create({ project, name: request.name, cidr: request.cidr, egress: request.egress ?? 'allow', dns: request.dns ?? [] });
    return toNetwork(record);
  }

  async get(id: string, caller: Principal): Promise<Network> {
    return toNetwork(await this.require(id, caller, 'read'));
  }

  async list(query: NetworkListQuery, caller: Principal): Promise<Network[]> {
    const visible = visibleProjects(caller);
    const projects = query.project === undefined ? visible : visible === undefined || visible.includes(query.project) ? [query.project] : [];
    return (await this.networks.list(projects)).map(toNetwork);
  }

  /**
   * Changes DNS (guests booted from then on get it) or egress. Egress changes only on a network no
   * VM is on: its hosts write a network's rules as its VMs start there, and nothing yet rewrites
   * them under running VMs.
   */
  async update(id: string, request: UpdateNetworkRequest, caller: Principal): Promise<Network> {
    const network = await this.require(id, caller, 'write');
    if (request.egress !== undefined && request.egress !== network.egress && network.vmCount > 0) {
      throw new NexusError('conflict', `network ${network.name} has ${network.vmCount} VMs: its egress cannot change while they are on it`, {
        suggestion: 'Delete its VMs first, or create a network with the egress you want and put new VMs there.',
      });
    }
    const updated = await this.networks.update(id, { egress: request.egress, dns: request.dns });
    if (!updated) throw notFound(id);
    return toNetwork(updated);
  }

  /** Deletes a network no VM has an address in; one in use is a 409 naming its VMs. */
  async delete(id: string, caller: Principal): Promise<void> {
    const network = await this.require(id, caller, 'write');
    const outcome = await this.networks.delete(id);
    if (outcome.usedBy.length > 0) {
      const named = outcome.usedBy.slice(0, NAMED_USERS).join(', ');
      const more = outcome.usedBy.length > NAMED_USERS ? ` and ${outcome.usedBy.length - NAMED_USERS} more` : '';
      throw new NexusError('conflict', `network ${network.name} is in use by VMs ${named}${more}`, {
        suggestion: 'Delete those VMs first; their addresses are free once their hosts have removed them.',
      });
    }
    if (!outcome.deleted) throw notFound(id);
  }

  /**
   * The NICs a new VM in `project` asks for: each named network (by name in the project, or id),
   * or, when it names none, one on the project's default network (made on first use). `nic: false`
   * asks for none, and cannot come with networks.
   */
  async nicRequests(project: string, networks: VmNetworkRequest[] | undefined, nic: boolean | undefined): Promise<NicRequest[]> {
    if (nic === false) {
      if (networks && networks.length > 0) {
        throw new NexusError('validation_failed', 'nic: false asks for no NIC, and networks for some', { suggestion: 'Give one of them.' });
      }
      return [];
    }
    if (networks === undefined) return [{ networkId: (await this.networks.ensureDefault(project, this.defaults)).id }];
    const seen = new Set<string>();
    const requests: NicRequest[] = [];
    for (const [index, wanted] of networks.entries()) {
      const network = UUID_PATTERN.test(wanted.network) ? await this.networks.get(wanted.network) : await this.networks.byName(project, wanted.network);
      if (!network || network.project !== project) {
        throw new NexusError('not_found', `networks[${index}]: no network ${wanted.network} in project ${project}`, {
          suggestion: 'GET /v1/networks lists them.',
        });
      }
      if (seen.has(network.id)) throw new NexusError('validation_failed', `networks[${index}]: network ${network.name} is named twice`);
      seen.add(network.id);
      requests.push({ networkId: network.id, ...(wanted.ip !== undefined ? { ip: wanted.ip } : {}) });
    }
    return requests;
  }

  /** A summary of the network for an audit row. */
  async auditSummary(id: string): Promise<unknown> {
    const network = await this.networks.get(id);
    return network ? { project: network.project, name: network.name, cidr: network.cidr, egress: network.egress, dns: network.dns } : null;
  }

  private async require(id: string, caller: Principal, verb: Verb): Promise<NetworkRecord> {
    const network = await this.networks.get(id);
    if (!network || decide(caller, 'network', verb, network.project) === 'hide') throw notFound(id);
    return network;
  }
}

function notFound(id: string): NexusError {
  return new NexusError('not_found', `no network ${id}`, { suggestion: 'GET /v1/networks lists them.' });
}

function toNetwork(record: NetworkRecord): Network {
  return {
    id: record.id,
    name: record.name,
    project: record.project,
    cidr: record.cidr,
    gateway: formatIpv4(networkBlockOf(record.cidr).gateway),
    egress: record.egress,
    dns: record.dns,
    vm_count: record.vmCount,
    resource_version: record.resourceVersion,
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  };
}
