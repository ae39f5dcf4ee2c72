import type { HostRecord } from './host-repo.js';
import type { Readable } from 'node:stream';
import type { FileTailQuery, LogStreamQuery, LogTail, LogTailQuery, MetricsRecent, MetricsWindowQuery } from '../../contracts/observe-api.js';
import type {
  AgentVm,
  CollectOrphansRequest,
  CollectOrphansResponse,
  Inventory,
  TakeSnapshotRequest,
  TakeSnapshotResponse,
} from '../../contracts/agent-vm-api.js';
import type { MachineSpec } from '../../contracts/machine-spec.js';

/** Where and how to reach one host's agent. */
export interface AgentTarget {
  hostId: string;
  /** For messages about this host. */
  hostName: string;
  address: string;
  /** The credential to present, sealed as stored: the gateway opens it as it calls. */
  credentialSealed: string;
}

/** How to reach the agent of a host record. */
export function agentTargetOf(host: Pick<HostRecord, 'id' | 'name' | 'address' | 'credentialSealed'>): AgentTarget {
  return { hostId: host.id, hostName: host.name, address: host.address, credentialSealed: host.credentialSealed };
}

/**
 * The manager's calls to agents. Network failures throw `unavailable` (retryable); a target whose
 * credential does not open with the manager's key throws `host_credential_unreadable` (that
 * host's calls fail, no other's).
 */
export interface AgentGateway {
  /** The agent's view of the VM, or undefined when it does not have it. */
  getVm(target: AgentTarget, vmId: string): Promise<AgentVm | undefined>;
  ensureVm(target: AgentTarget, vmId: string, spec: MachineSpec): Promise<AgentVm>;
  act(target: AgentTarget, vmId: string, action: 'start' | 'stop' | 'pause' | 'resume' | 'hibernate' | 'wake', timeoutMs?: number): Promise<AgentVm>;
  /** Stops and removes the VM; succeeds when it is already gone. */
  deleteVm(target: AgentTarget, vmId: string): Promise<void>;
  inventory(target: AgentTarget): Promise<Inventory>;
  /** Captures the VM into a snapshot its host keeps; taking one again with the same id answers the one taken. */
  takeSnapshot(target: AgentTarget, vmId: string, request: TakeSnapshotRequest): Promise<TakeSnapshotResponse>;
  /** Makes the VM on the snapshot's host, restored from it and running; asking again answers the VM made. */
  instantiateVm(target: AgentTarget, snapshotId: string, vmId: string, spec: MachineSpec): Promise<AgentVm>;
  /** Removes a snapshot's files from its host; succeeds when they are gone already. */
  deleteSnapshot(target: AgentTarget, snapshotId: string): Promise<void>;
  /** Asks the agent to remove leftovers; it removes only those still orphaned, and says which. */
  collectOrphans(target: AgentTarget, orphans: CollectOrphansRequest): Promise<CollectOrphansResponse['removed']>;
  /** The last lines of a VM's log. */
  vmLogs(target: AgentTarget, vmId: string, query: LogTailQuery): Promise<LogTail>;
  /** A VM's log as the agent's event stream (text/event-stream bytes), from `lastEventId` when resuming. */
  streamVmLogs(target: AgentTarget, vmId: string, query: LogStreamQuery, lastEventId: string | undefined, signal: AbortSignal): Promise<Readable>;
  /** The VM's metrics records of the last window. */
  vmMetrics(target: AgentTarget, vmId: string, query: MetricsWindowQuery): Promise<MetricsRecent>;
  /** The last lines of a file under the host's VM folders, by path (dev mode). */
  tailFile(target: AgentTarget, query: FileTailQuery): Promise<LogTail>;
  /** Hands the agent its next credential, sealed as stored (idempotent: giving the one it has already is a success). */
  replaceCredential(target: AgentTarget, nextSealed: string): Promise<void>;
}
