import type { AgentVm, CollectOrphansRequest, CollectOrphansResponse, Inventory } from '../../contracts/agent-vm-api.js';
import type { MachineSpec } from '../../contracts/machine-spec.js';

/** Where and how to reach one host's agent. */
export interface AgentTarget {
  hostId: string;
  address: string;
  credential: string;
}

/** The manager's calls to agents. Network failures throw `unavailable` (retryable). */
export interface AgentGateway {
  /** The agent's view of the VM, or undefined when it does not have it. */
  getVm(target: AgentTarget, vmId: string): Promise<AgentVm | undefined>;
  ensureVm(target: AgentTarget, vmId: string, spec: MachineSpec): Promise<AgentVm>;
  act(target: AgentTarget, vmId: string, action: 'start' | 'stop' | 'pause' | 'resume', timeoutMs?: number): Promise<AgentVm>;
  /** Stops and removes the VM; succeeds when it is already gone. */
  deleteVm(target: AgentTarget, vmId: string): Promise<void>;
  inventory(target: AgentTarget): Promise<Inventory>;
  /** Asks the agent to remove leftovers; it removes only those still orphaned, and says which. */
  collectOrphans(target: AgentTarget, orphans: CollectOrphansRequest): Promise<CollectOrphansResponse['removed']>;
  /** Hands the agent its next credential (idempotent: giving the one it has already is a success). */
  replaceCredential(target: AgentTarget, next: string): Promise<void>;
}
