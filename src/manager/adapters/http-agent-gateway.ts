import type { Readable } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import type { FileTailQuery, LogStreamQuery, LogTail, LogTailQuery, MetricsRecent, MetricsWindowQuery } from '../../contracts/observe-api.js';
import type {
  AgentVm,
  CollectOrphansRequest,
  CollectOrphansResponse,
  Inventory,
  TakeSnapshotRequest,
  TakeSnapshotResponse,
  VmActionResponse,
} from '../../contracts/agent-vm-api.js';
import { AGENT_API_PREFIX } from '../../contracts/agent-api.js';
import type { MachineSpec } from '../../contracts/machine-spec.js';
import { JsonClient } from '../../kit/json-client.js';
import { NexusError } from '../../kit/nexus-error.js';
import { currentRequestId } from '../../kit/request-context.js';
import type { AgentGateway, AgentTarget } from '../ports/agent-gateway.js';

export interface HttpAgentGatewayOptions {
  /** Opens a host credential sealed as stored; throws when it does not open (another key, a damaged value). */
  openCredential: (sealed: string) => string;
  /** Per-call deadline. Default 60 s. */
  timeoutMs?: number;
  /** Reach agents over https, verifying their certificates against this CA (PEM). Default plain http. */
  ca?: Buffer;
}

/**
 * How long a snapshot, or a VM restored from one, may take: the guest's memory and writable disks
 * are written (or read and copied), which for a large VM on a slow disk takes minutes, not the
 * seconds of other calls.
 */
const SNAPSHOT_TIMEOUT_MS = 10 * 60_000;

/**
 * Agents over HTTP(S), one client (connection pool) per host, replaced when its address or
 * credential changes. A host's credential is opened here, when its client is made (once per
 * credential, not per call), and lives only in that client.
 */
export class HttpAgentGateway implements AgentGateway {
  private readonly clients = new Map<string, { key: string; client: JsonClient }>();
  private readonly calls = new Counter<'operation'>({
    name: 'nexus_manager_agent_calls_total',
    help: 'Calls this manager made to agents, by operation (get_vm, ensure_vm, act, delete_vm, inventory, take_snapshot, instantiate_vm, delete_snapshot, collect_orphans, vm_logs, stream_vm_logs, vm_metrics, tail_file, replace_credential)',
    labelNames: ['operation'],
    registers: [],
  });

  constructor(private readonly options: HttpAgentGatewayOptions) {}

  async getVm(target: AgentTarget, vmId: string): Promise<AgentVm | undefined> {
    try {
      return await this.client(target, 'get_vm').call<AgentVm>('GET', `${AGENT_API_PREFIX}/vms/${vmId}`);
    } catch (error) {
      if (error instanceof NexusError && error.code === 'not_found') return undefined;
      throw error;
    }
  }

  ensureVm(target: AgentTarget, vmId: string, spec: MachineSpec): Promise<AgentVm> {
    return this.client(target, 'ensure_vm').call<AgentVm>('PUT', `${AGENT_API_PREFIX}/vms/${vmId}`, spec);
  }

  async act(target: AgentTarget, vmId: string, action: 'start' | 'stop' | 'pause' | 'resume' | 'hibernate' | 'wake', timeoutMs?: number): Promise<AgentVm> {
    const body = timeoutMs === undefined ? { action } : { action, timeout_ms: timeoutMs };
    return (await this.client(target, 'act').call<VmActionResponse>('POST', `${AGENT_API_PREFIX}/vms/${vmId}/actions`, body)).vm;
  }

  async deleteVm(target: AgentTarget, vmId: string): Promise<void> {
    await this.client(target, 'delete_vm').call('DELETE', `${AGENT_API_PREFIX}/vms/${vmId}`);
  }

  inventory(target: AgentTarget): Promise<Inventory> {
    return this.client(target, 'inventory').call<Inventory>('GET', `${AGENT_API_PREFIX}/inventory`);
  }

  takeSnapshot(target: AgentTarget, vmId: string, request: TakeSnapshotRequest): Promise<TakeSnapshotResponse> {
    return this.client(target, 'take_snapshot').call<TakeSnapshotResponse>(
      'POST',
      `${AGENT_API_PREFIX}/vms/${vmId}/snapshots`,
      request,
      Math.max(this.options.timeoutMs ?? 60_000, SNAPSHOT_TIMEOUT_MS),
    );
  }

  instantiateVm(target: AgentTarget, snapshotId: string, vmId: string, spec: MachineSpec): Promise<AgentVm> {
    return this.client(target, 'instantiate_vm').call<AgentVm>(
      'POST',
      `${AGENT_API_PREFIX}/snapshots/${snapshotId}/instantiate`,
      { vm_id: vmId, spec },
      Math.max(this.options.timeoutMs ?? 60_000, SNAPSHOT_TIMEOUT_MS),
    );
  }

  async deleteSnapshot(target: AgentTarget, snapshotId: string): Promise<void> {
    await this.client(target, 'delete_snapshot').call('DELETE', `${AGENT_API_PREFIX}/snapshots/${snapshotId}`);
  }

  async collectOrphans(target: AgentTarget, orphans: CollectOrphansRequest): Promise<CollectOrphansResponse['removed']> {
    return (await this.client(target, 'collect_orphans').call<CollectOrphansResponse>('POST', `${AGENT_API_PREFIX}/gc`, orphans)).removed;
  }

  vmLogs(target: AgentTarget, vmId: string, query: LogTailQuery): Promise<LogTail> {
    return this.client(target, 'vm_logs').call<LogTail>('GET', `${AGENT_API_PREFIX}/vms/${vmId}/logs?${queryString(query)}`);
  }

  streamVmLogs(target: AgentTarget, vmId: string, query: LogStreamQuery, lastEventId: string | undefined, signal: AbortSignal): Promise<Readable> {
    return this.client(target, 'stream_vm_logs').stream(`${AGENT_API_PREFIX}/vms/${vmId}/logs/stream?${queryString(query)}`, {
      headers: lastEventId === undefined ? {} : { 'last-event-id': lastEventId },
      signal,
    });
  }

  vmMetrics(target: AgentTarget, vmId: string, query: MetricsWindowQuery): Promise<MetricsRecent> {
    return this.client(target, 'vm_metrics').call<MetricsRecent>('GET', `${AGENT_API_PREFIX}/vms/${vmId}/metrics/recent?${queryString(query)}`);
  }

  tailFile(target: AgentTarget, query: FileTailQuery): Promise<LogTail> {
    return this.client(target, 'tail_file').call<LogTail>('GET', `${AGENT_API_PREFIX}/logs/tail?${queryString(query)}`);
  }

  async replaceCredential(target: AgentTarget, nextSealed: string): Promise<void> {
    const client = this.client(target, 'replace_credential');
    await client.call('PUT', `${AGENT_API_PREFIX}/credential`, { credential: this.open(target, nextSealed) });
  }

  /** A credential of the target's host, opened; `host_credential_unreadable` naming the host when it does not open. */
  private open(target: AgentTarget, sealed: string): string {
    try {
      return this.options.openCredential(sealed);
    } catch (error) {
      throw new NexusError(
        'host_credential_unreadable',
        `the stored credential of host ${target.hostName} does not open with this manager's key: its agent cannot be called`,
        {
          cause: error,
          suggestion:
            'If NEXUS_SECRET_KEY_FILE names another key than the one this database was sealed with, point it at that one (every manager of the database needs the same file). ' +
            `If the stored value itself was damaged, give the host a new credential: \`nexus hosts join-token --replace ${target.hostName}\`, and start its agent with that token.`,
        },
      );
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map(({ client }) => client.close()));
    this.clients.clear();
  }

  /** The calls made to agents, by operation: a follower makes none but for the API reads it serves. */
  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.calls);
  }

  private client(target: AgentTarget, operation: AgentOperation): JsonClient {
    this.calls.inc({ operation });
    const key = `${target.address}\n${target.credentialSealed}`;
    const cached = this.clients.get(target.hostId);
    if (cached?.key === key) return cached.client;
    const bearer = this.open(target, target.credentialSealed);
    void cached?.client.close();
    const client = new JsonClient({
      baseUrl: `${this.options.ca ? 'https' : 'http'}://${target.address}`,
      bearer,
      timeoutMs: this.options.timeoutMs ?? 60_000,
      ca: this.options.ca,
      requestId: currentRequestId,
    });
    this.clients.set(target.hostId, { key, client });
    return client;
  }
}

/** What a call to an agent does, as the `operation` label of its count. */
type AgentOperation =
  | 'get_vm'
  | 'ensure_vm'
  | 'act'
  | 'delete_vm'
  | 'inventory'
  | 'take_snapshot'
  | 'instantiate_vm'
  | 'delete_snapshot'
  | 'collect_orphans'
  | 'vm_logs'
  | 'stream_vm_logs'
  | 'vm_metrics'
  | 'tail_file'
  | 'replace_credential';

function queryString(query: Record<string, string | number | undefined>): string {
  return new URLSearchParams(
    Object.entries(query).flatMap(([name, value]) => (value === undefined ? [] : [[name, String(value)] as [string, string]])),
  ).toString();
}
