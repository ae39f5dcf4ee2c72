import type { Host, HostList, JoinToken } from '../../contracts/host-api.js';
import type { Image, ImageListQuery } from '../../contracts/image-api.js';
import type { CreateNetworkRequest, Network, NetworkList } from '../../contracts/network-api.js';
import { UUID_PATTERN } from '../../contracts/schema.js';
import type { CreateSnapshotRequest, InstantiateSnapshotRequest, Snapshot } from '../../contracts/snapshot-api.js';
import type { CreateVmRequest, Vm } from '../../contracts/vm-api.js';
import { JsonClient } from '../../kit/json-client.js';
import { NexusError } from '../../kit/nexus-error.js';

/** The CLI's typed view of the manager API. */
export class ManagerClient {
  private readonly http: JsonClient;

  constructor(baseUrl: string, token?: string, ca?: Buffer) {
    this.http = new JsonClient({ baseUrl, ca, ...(token ? { bearer: token } : {}) });
  }

  listHosts(): Promise<HostList> {
    return this.http.call('GET', '/v1/hosts');
  }

  rotateHostCredential(hostId: string): Promise<Host> {
    return this.http.call('POST', `/v1/hosts/${encodeURIComponent(hostId)}/rotate-credential`);
  }

  listImages(query: ImageListQuery = {}): Promise<{ items: Image[] }> {
    const search = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
    return this.http.call('GET', `/v1/images${search.size > 0 ? `?${search}` : ''}`);
  }

  /** `replaceHost`: the ready host the token may replace (its agent is locked out). */
  mintJoinToken(ttlSeconds: number, replaceHost?: string): Promise<JoinToken> {
    return this.http.call('POST', '/v1/hosts/join-tokens', { ttl_seconds: ttlSeconds, ...(replaceHost === undefined ? {} : { replace_host: replaceHost }) });
  }

  createNetwork(request: CreateNetworkRequest): Promise<Network> {
    return this.http.call('POST', '/v1/networks', request);
  }

  listNetworks(project?: string): Promise<NetworkList> {
    return this.http.call('GET', `/v1/networks${project ? `?project=${encodeURIComponent(project)}` : ''}`);
  }

  /** A network by id, or by name (in `project`, else the only one of that name the token sees). */
  async findNetwork(nameOrId: string, project?: string): Promise<Network> {
    if (UUID_PATTERN.test(nameOrId)) return this.http.call('GET', `/v1/networks/${nameOrId}`);
    return theOneNamed('network', nameOrId, project, (await this.listNetworks(project)).items);
  }

  deleteNetwork(id: string): Promise<{ ok: true }> {
    return this.http.call('DELETE', `/v1/networks/${encodeURIComponent(id)}`);
  }

  /** `waitSeconds`: answer once the VM runs (or is configured, when created stopped), at most that long. */
  createVm(request: CreateVmRequest, waitSeconds?: number): Promise<Vm> {
    return this.http.call('POST', `/v1/vms${waitSeconds ? `?wait=${waitSeconds}` : ''}`, request);
  }

  /** Every VM the token sees, page after page, by name. */
  async listVms(): Promise<Vm[]> {
    const vms: Vm[] = [];
    for (let cursor: string | null = null; ;) {
      const page: { items: Vm[]; next_cursor: string | null } = await this.http.call(
        'GET',
        `/v1/vms?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      vms.push(...page.items);
      cursor = page.next_cursor;
      if (cursor === null) return vms;
    }
  }

  /** A VM by id, or by name (in `project`, else the only one of that name the token sees). */
  async findVm(nameOrId: string, project?: string): Promise<Vm> {
    if (UUID_PATTERN.test(nameOrId)) return this.http.call('GET', `/v1/vms/${nameOrId}`);
    const page: { items: Vm[] } = await this.http.call('GET', `/v1/vms?limit=500&name_prefix=${encodeURIComponent(nameOrId)}`);
    return theOneNamed('VM', nameOrId, project, page.items);
  }

  vmAction(id: string, action: 'start' | 'stop' | 'hibernate' | 'wake', waitSeconds?: number): Promise<{ ok: true }> {
    return this.http.call('POST', `/v1/vms/${encodeURIComponent(id)}/${action}${waitSeconds ? `?wait=${waitSeconds}` : ''}`);
  }

  /** `keepSnapshots`: the VM's snapshots outlive it (they are deleted with it otherwise). */
  deleteVm(id: string, waitSeconds?: number, keepSnapshots = false): Promise<{ ok: true }> {
    const query = new URLSearchParams({ ...(waitSeconds ? { wait: String(waitSeconds) } : {}), ...(keepSnapshots ? { keep_snapshots: 'true' } : {}) });
    return this.http.call('DELETE', `/v1/vms/${encodeURIComponent(id)}${query.size > 0 ? `?${query}` : ''}`);
  }

  createSnapshot(vmId: string, request: CreateSnapshotRequest): Promise<Snapshot> {
    return this.http.call('POST', `/v1/vms/${encodeURIComponent(vmId)}/snapshots`, request);
  }

  /** The snapshots the token sees, newest first; of one project or one VM when given. */
  listSnapshots(filter: { project?: string; vmId?: string } = {}): Promise<{ items: Snapshot[] }> {
    const query = new URLSearchParams({ ...(filter.project ? { project: filter.project } : {}), ...(filter.vmId ? { vm_id: filter.vmId } : {}) });
    return this.http.call('GET', `/v1/snapshots${query.size > 0 ? `?${query}` : ''}`);
  }

  /** A snapshot by id, or by name (in `project`, else the only one of that name the token sees). */
  async findSnapshot(nameOrId: string, project?: string): Promise<Snapshot> {
    if (UUID_PATTERN.test(nameOrId)) return this.http.call('GET', `/v1/snapshots/${nameOrId}`);
    return theOneNamed('snapshot', nameOrId, project, (await this.listSnapshots({ project })).items);
  }

  /** `waitSeconds`: answer once the new VM runs, at most that long. */
  instantiateSnapshot(id: string, request: InstantiateSnapshotRequest, waitSeconds?: number): Promise<Vm> {
    return this.http.call('POST', `/v1/snapshots/${encodeURIComponent(id)}/instantiate${waitSeconds ? `?wait=${waitSeconds}` : ''}`, request);
  }

  deleteSnapshot(id: string): Promise<{ ok: true }> {
    return this.http.call('DELETE', `/v1/snapshots/${encodeURIComponent(id)}`);
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

/** The one resource of `items` named `name` (in `project`, when given): none or several is an error saying what to do. */
function theOneNamed<T extends { name: string; project: string }>(
  kind: 'VM' | 'network' | 'snapshot',
  name: string,
  project: string | undefined,
  items: T[],
): T {
  const named = items.filter((item) => item.name === name && (project === undefined || item.project === project));
  if (named.length === 1 && named[0]) return named[0];
  if (named.length === 0) {
    throw new NexusError('not_found', `no ${kind} named ${name}${project ? ` in project ${project}` : ''}`, {
      suggestion: `\`nexus ${kind.toLowerCase()} ls\` lists them.`,
    });
  }
  throw new NexusError('conflict', `${named.length} ${kind}s are named ${name}, in projects ${named.map((item) => item.project).join(', ')}`, {
    suggestion: 'Say which with --project, or give the id.',
  });
}
