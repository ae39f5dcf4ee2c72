import type { VmmName } from '../../contracts/machine-spec.js';
import type { Egress } from '../../contracts/network-api.js';
import type { DesiredState, ObservedState } from '../../contracts/vm-api.js';
import type { ProjectQuota, ProjectUsage } from '../domain/access-policy.js';
import type { StartHistory } from '../domain/vm-lifecycle.js';

/**
 * What a VM is made of, as the user asked (the `spec` column). A file given by image id has a null
 * path here: where it is on the VM's host is the reconciler's record ({@link VmStatus.placedPaths}).
 * (Rows placed before that status existed carry the host path here, next to the id.)
 */
export interface StoredVmSpec {
  vcpu: number;
  mem_mib: number;
  kernel_path: string | null;
  kernel_image_id?: string | null;
  initrd_path: string | null;
  initrd_image_id?: string | null;
  boot_args: string;
  rootfs_path: string | null;
  rootfs_image_id?: string | null;
  extra_drives: StoredDrive[];
  nic: boolean;
  /** Guest ports published on its host (absent in rows older than published ports). */
  ports?: Array<{ host_port: number; guest_port: number; protocol: 'tcp' | 'udp' }>;
  /** The snapshot it is made from: restored from it, not booted, when its host first makes it. */
  snapshot_id?: string;
}

/** A host port a placed VM holds. */
export interface PortHolder {
  hostId: string;
  protocol: 'tcp' | 'udp';
  hostPort: number;
  vmId: string;
  vmName: string;
  /** The holder's project: a caller of another project is not told its name. */
  project: string;
}

/**
 * What the reconciler records about a VM beside its observed state, in the VM's row: so a manager
 * that restarts, or a new leader, goes on from it instead of from nothing.
 */
export interface VmStatus {
  /** The VMM its host runs it with, and its files there, as the agent reports them; null until the agent first has. */
  driver: VmmName | null;
  /** The VMM's control socket on the host (QMP, Firecracker's API). */
  apiSocket: string | null;
  consoleLog: string | null;
  /** Where each image the VM uses is on its host (image id -> path), recorded at placement. */
  placedPaths: Record<string, string>;
  /** Failed starts in a row (a start refused, or a VMM that exited soon after starting): the restart budget counts them. */
  startFailures: number;
  /** When its VMM was last started: a VMM that dies soon after is a failed start, one that ran a good while is forgiven. */
  startedAt: Date | null;
}

export interface StoredDrive {
  id: string;
  path: string | null;
  image_id?: string | null;
  read_only: boolean;
}

export interface StoredVmError {
  reason: string;
  message: string;
  at: string;
  suggestion?: string;
  /** The last lines the guest printed on its console before the error. */
  console_tail?: string[];
}

/** A NIC of a VM: its address, and what the guest and its host need of the network it is on. */
export interface VmNic {
  index: number;
  networkId: string;
  network: string;
  ip: string;
  /** The network's block, e.g. 10.220.8.0/24. */
  cidr: string;
  egress: Egress;
  dns: string[];
}

/** A NIC a new VM asks for: the network (already resolved to an id of the VM's project) and, optionally, its address. */
export interface NicRequest {
  networkId: string;
  ip?: string;
}

export interface VmRecord {
  id: string;
  projectId: string;
  project: string;
  name: string;
  hostId: string | null;
  spec: StoredVmSpec;
  desiredState: DesiredState;
  observedState: ObservedState;
  status: VmStatus;
  lastError: StoredVmError | null;
  tags: Record<string, string>;
  /** Its NICs' addresses, by index. */
  nics: VmNic[];
  expiresAt: Date | null;
  resourceVersion: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewVm {
  project: string;
  name: string;
  spec: StoredVmSpec;
  desiredState: DesiredState;
  tags: Record<string, string>;
  expiresAt: Date | null;
  /** Each gets an address in its network as the VM is inserted (see `pickAddress`); none when absent. */
  nics?: NicRequest[];
  /** Placed as it is inserted, on this host (a VM restored from a snapshot goes where the snapshot is). */
  placement?: { hostId: string; placedPaths: Record<string, string> };
}

export interface VmFilter {
  state?: ObservedState;
  hostId?: string;
  namePrefix?: string;
  /** Names after this one (the cursor), in name order. */
  afterName?: string;
  limit: number;
  /** Only VMs of these projects; undefined: every project. */
  projects?: string[];
}

export interface Observation {
  to: ObservedState;
  /** Why, in words, for the event history. */
  message: string;
  level?: 'info' | 'warn' | 'error';
  /** Set on failures; cleared (null) when the VM reaches a healthy state. */
  lastError?: StoredVmError | null;
}

/** Which events {@link VmRepo.eventsAfter} answers. */
export interface EventsFilter {
  after: { at: Date; id?: string };
  minLevel: 'info' | 'warn' | 'error';
  projects?: string[];
  vmId?: string;
  limit: number;
}

export interface VmEventRecord {
  id: string;
  vmId: string;
  level: 'info' | 'warn' | 'error';
  kind: string;
  fromState: string | null;
  toState: string | null;
  message: string;
  createdAt: Date;
}

/**
 * Lets a new VM into its project, or throws to refuse it, from the project's quota and what its
 * VMs take the moment before the VM is inserted.
 */
export type QuotaCheck = (quota: ProjectQuota, usage: ProjectUsage) => void;

export interface HostAllocation {
  hostId: string;
  vcpus: number;
  memoryMib: number;
}

/** VMs and their event history. Users' writes touch the desired state; the reconciler's, the observed. */
export interface VmRepo {
  /**
   * Inserts the VM if `check` lets it into its project (called only when the project has a
   * quota). The check and the insert are one step: VMs created at once in one project are
   * checked one after another, each counting the others, so together they never pass a quota.
   * Refuses an unknown project with `not_found` and a duplicate name in it with `conflict`.
   * Each NIC gets its address in the same step (the lowest free one, or the one asked for), so a
   * refused VM holds none, and an address is never handed out twice: refused as `pickAddress`
   * says, or `not_found` for a network that is not (or no longer) the project's.
   */
  create(vm: NewVm, check: QuotaCheck): Promise<VmRecord>;
  get(id: string): Promise<VmRecord | undefined>;
  list(filter: VmFilter): Promise<VmRecord[]>;
  ids(): Promise<string[]>;
  /**
   * Records the user's intent and bumps the resource version; the restart budget starts afresh
   * (a user asking again is what a VM given up on waits for). With `expectedVersion`, only if the
   * VM is still at that version: answers 'stale' otherwise (someone else wrote first).
   */
  setDesired(id: string, desired: DesiredState, expectedVersion?: number): Promise<VmRecord | 'stale' | undefined>;
  /** Binds the VM to its host for life, recording where its images are there. */
  /**
   * Places the VM on the host, reserving there the host ports its spec publishes, in one
   * transaction. Answers the ports other VMs already hold there: then nothing was written.
   */
  setHost(id: string, hostId: string, placedPaths: Record<string, string>): Promise<PortHolder[]>;
  /** Which VMs hold any of these host ports, on any host. */
  portHolders(ports: ReadonlyArray<{ protocol: 'tcp' | 'udp'; hostPort: number }>): Promise<PortHolder[]>;
  /** Records the VMM the agent runs the VM with, and where its files are on the host, as the agent reports them. */
  setAgentView(id: string, view: { driver: VmmName; apiSocket: string; consoleLog: string }): Promise<void>;
  /**
   * Records the VM's start history (failed starts in a row, and when given, when its VMM last
   * started), but only if it is still `seen`: a user who asked again meanwhile renewed the budget,
   * and a count taken before that must not overwrite it. Answers whether it was written.
   */
  recordStarts(id: string, starts: { failures: number; startedAt?: Date | null }, seen: StartHistory): Promise<boolean>;
  /** Records what the reconciler saw; a change of state (or an error) also becomes an event. */
  observe(id: string, observation: Observation): Promise<void>;
  delete(id: string): Promise<void>;
  events(id: string): Promise<VmEventRecord[]>;
  /**
   * Events of every VM (of `projects`, when given) at `minLevel` or above, after `after` (time,
   * then id, for paging and streams; with an id, after that event as stored, `at` counting only
   * when it is not), oldest first, at most `limit`.
   */
  eventsAfter(filter: EventsFilter): Promise<VmEventRecord[]>;
  /** What the VMs placed on each host take (VMs being deleted still count until gone). */
  allocations(): Promise<HostAllocation[]>;
  /** How many VMs each host has in each observed state (host null: not placed). */
  stateCounts(): Promise<Array<{ hostId: string | null; state: string; count: number }>>;
}
