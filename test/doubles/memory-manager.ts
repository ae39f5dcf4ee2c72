/**
 * In-memory fakes of the manager's ports, for unit tests of its use cases and reconcilers: a VM
 * store with the SQL store's semantics (sql-vm-repo.ts is the reference), hosts, an image
 * registry, agents that keep their VMs in maps, and a clock the test moves. Records go in and out
 * as copies, so a test holding one never sees (or makes) a change behind the store's back.
 */
import { Readable } from 'node:stream';
import type {
  AgentVm,
  CollectOrphansRequest,
  CollectOrphansResponse,
  HostSnapshot,
  Inventory,
  Orphans,
  TakeSnapshotRequest,
  TakeSnapshotResponse,
} from '../../src/contracts/agent-vm-api.js';
import type { HostCapacity } from '../../src/contracts/agent-api.js';
import { tapNameOf } from '../../src/contracts/host-names.js';
import type { HostImage } from '../../src/contracts/image-api.js';
import type { MachineSpec, VmmName } from '../../src/contracts/machine-spec.js';
import type { FileTailQuery, LogStreamQuery, LogTail, LogTailQuery, MetricsRecent } from '../../src/contracts/observe-api.js';
import type { DesiredState } from '../../src/contracts/vm-api.js';
import { vmLayout } from '../../src/contracts/vm-layout.js';
import { sameMachine } from '../../src/agent/domain/machine-spec-rules.js';
import type { Clock } from '../../src/kit/clock.js';
import { NexusError } from '../../src/kit/nexus-error.js';
import type { ProjectQuota, ProjectUsage } from '../../src/manager/domain/access-policy.js';
import type { StartHistory } from '../../src/manager/domain/vm-lifecycle.js';
import type { AgentGateway, AgentTarget } from '../../src/manager/ports/agent-gateway.js';
import type { HostRecord, HostRepo } from '../../src/manager/ports/host-repo.js';
import type { ImageFilter, ImageRecord, ImageRepo } from '../../src/manager/ports/image-repo.js';
import type { Leadership } from '../../src/manager/ports/leadership.js';
import { checkNetworkCidr, freeBlockIn, networkBlockOf, overlapping, pickAddress } from '../../src/manager/domain/network-rules.js';
import { formatIpv4Block } from '../../src/kit/ipv4.js';
import type { Egress } from '../../src/contracts/network-api.js';
import type { NewSnapshot, SnapshotRecord, SnapshotRepo, TakenSnapshot } from '../../src/manager/ports/snapshot-repo.js';
import { DEFAULT_NETWORK, type DefaultNetworkPool, type NetworkRecord, type NetworkRepo, type NewNetwork } from '../../src/manager/ports/network-repo.js';
import type {
  EventsFilter,
  HostAllocation,
  NewVm,
  NicRequest,
  Observation,
  PortHolder,
  QuotaCheck,
  VmEventRecord,
  VmFilter,
  VmNic,
  VmRecord,
  VmRepo,
} from '../../src/manager/ports/vm-repo.js';

/**
 * Ids that pass as UUIDs and sort in the order they were made (events of one millisecond keep
 * their order); the count comes first, so ids differ in the part TAP names are made of.
 */
export class IdSequence {
  private next = 1;
  /** `tag`: four hex digits telling one kind of id from another. */
  constructor(private readonly tag: string) {}

  take(): string {
    return `${(this.next++).toString(16).padStart(8, '0')}-${this.tag}-4000-8000-000000000000`;
  }
}

/** A clock that moves only when the test says. */
export class ManualClock implements Clock {
  constructor(private ms = Date.parse('2026-01-01T00:00:00.000Z')) {}

  now(): Date {
    return new Date(this.ms);
  }

  advance(ms: number): void {
    this.ms += ms;
  }
}

/** The pool default networks come from in unit tests: /24s of 10.220.0.0/16. */
export const TEST_NETWORK_POOL: DefaultNetworkPool = { pool: { base: 0x0adc0000, prefixLength: 16 }, prefixLength: 24 };

/** This manager always leads. */
export const alwaysLeader: Leadership = { isLeader: () => true, start: () => undefined, stop: async () => undefined };

const copy = <T>(value: T): T => structuredClone(value);

/**
 * VMs and their events in maps, with the SQL store's rules: projects must exist, names are unique
 * per project, a project's quota is checked as the VM goes in, `setDesired` bumps the version.
 */
export class MemoryVmRepo implements VmRepo {
  /** Each known project's id, by name. */
  readonly projects = new Map<string, string>();
  /** Projects with a quota; a project missing here (or with every field null) has none. */
  readonly quotas = new Map<string, ProjectQuota>();
  private readonly vms = new Map<string, VmRecord>();
  private readonly eventLog: VmEventRecord[] = [];
  private readonly vmIds = new IdSequence('0000');
  private readonly eventIds = new IdSequence('eeee');
  private readonly projectIds = new IdSequence('dddd');
  /** The networks its VMs' NICs are on: one store, as the two tables are one database. */
  readonly networks: MemoryNetworkRepo;

  constructor(
    private readonly clock: Clock,
    projects: readonly string[] = ['default'],
  ) {
    for (const name of projects) this.addProject(name);
    this.networks = new MemoryNetworkRepo(clock, this.projects, () => [...this.vms.values()]);
  }

  addProject(name: string, quota?: ProjectQuota): void {
    if (!this.projects.has(name)) this.projects.set(name, this.projectIds.take());
    if (quota) this.quotas.set(name, quota);
  }

  async create(vm: NewVm, check: QuotaCheck): Promise<VmRecord> {
    const projectId = this.projects.get(vm.project);
    if (!projectId) throw new NexusError('not_found', `no project ${vm.project}`, { suggestion: 'POST /v1/projects creates it.' });
    const quota = this.quotas.get(vm.project);
    if (quota && (quota.maxVms !== null || quota.maxVcpus !== null || quota.maxMemoryMib !== null)) check(copy(quota), this.usageOf(vm.project));
    if ([...this.vms.values()].some((other) => other.project === vm.project && other.name === vm.name)) {
      throw new NexusError('conflict', `a VM named ${vm.name} already exists in project ${vm.project}`, {
        suggestion: 'Choose another name, or delete the other VM first.',
      });
    }
    const now = this.clock.now();
    const id = this.vmIds.take();
    const nics = (vm.nics ?? []).map((nic, index) => this.networks.allocate(vm.project, index, nic));
    const record: VmRecord = {
      id,
      projectId,
      project: vm.project,
      name: vm.name,
      hostId: vm.placement?.hostId ?? null,
      spec: copy(vm.spec),
      desiredState: vm.desiredState,
      observedState: 'requested',
      status: { driver: null, apiSocket: null, consoleLog: null, placedPaths: { ...vm.placement?.placedPaths }, startFailures: 0, startedAt: null },
      lastError: null,
      tags: copy(vm.tags),
      nics,
      expiresAt: vm.expiresAt && new Date(vm.expiresAt),
      resourceVersion: 1,
      createdAt: now,
      updatedAt: now,
    };
    this.vms.set(record.id, record);
    return copy(record);
  }

  async get(id: string): Promise<VmRecord | undefined> {
    const vm = this.vms.get(id);
    return vm && copy(vm);
  }

  async list(filter: VmFilter): Promise<VmRecord[]> {
    return [...this.vms.values()]
      .filter(
        (vm) =>
          (filter.state === undefined || vm.observedState === filter.state) &&
          (filter.hostId === undefined || vm.hostId === filter.hostId) &&
          (filter.namePrefix === undefined || vm.name.startsWith(filter.namePrefix)) &&
          (filter.afterName === undefined || vm.name > filter.afterName) &&
          (filter.projects === undefined || filter.projects.includes(vm.project)),
      )
      .sort((a, b) => compare(a.name, b.name) || compare(a.project, b.project))
      .slice(0, filter.limit)
      .map(copy);
  }

  async ids(): Promise<string[]> {
    return [...this.vms.keys()];
  }

  async setDesired(id: string, desired: DesiredState, expectedVersion?: number): Promise<VmRecord | 'stale' | undefined> {
    const vm = this.vms.get(id);
    if (!vm) return undefined;
    if (expectedVersion !== undefined && vm.resourceVersion !== expectedVersion) return 'stale';
    vm.desiredState = desired;
    vm.resourceVersion += 1;
    vm.status.startFailures = 0;
    vm.status.startedAt = null;
    vm.updatedAt = this.clock.now();
    return copy(vm);
  }

  async setHost(id: string, hostId: string, placedPaths: Record<string, string>): Promise<PortHolder[]> {
    const vm = this.vms.get(id);
    if (!vm) return [];
    const wanted = (vm.spec.ports ?? []).map((port) => ({ protocol: port.protocol, hostPort: port.host_port }));
    const taken = (await this.portHolders(wanted)).filter((holder) => holder.hostId === hostId && holder.vmId !== id);
    if (taken.length > 0) return taken;
    vm.hostId = hostId;
    vm.status.placedPaths = copy(placedPaths);
    vm.updatedAt = this.clock.now();
    return [];
  }

  async portHolders(ports: ReadonlyArray<{ protocol: 'tcp' | 'udp'; hostPort: number }>): Promise<PortHolder[]> {
    const holders: PortHolder[] = [];
    for (const vm of this.vms.values()) {
      if (vm.hostId === null) continue;
      for (const port of vm.spec.ports ?? []) {
        if (ports.some((each) => each.protocol === port.protocol && each.hostPort === port.host_port)) {
          holders.push({ hostId: vm.hostId, protocol: port.protocol, hostPort: port.host_port, vmId: vm.id, vmName: vm.name, project: vm.project });
        }
      }
    }
    return holders.sort((a, b) => a.hostPort - b.hostPort || a.vmName.localeCompare(b.vmName));
  }

  async setAgentView(id: string, view: { driver: VmmName; apiSocket: string; consoleLog: string }): Promise<void> {
    const vm = this.vms.get(id);
    if (!vm) return;
    vm.status.driver = view.driver;
    vm.status.apiSocket = view.apiSocket;
    vm.status.consoleLog = view.consoleLog;
  }

  async recordStarts(id: string, starts: { failures: number; startedAt?: Date | null }, seen: StartHistory): Promise<boolean> {
    const vm = this.vms.get(id);
    if (!vm || vm.status.startFailures !== seen.startFailures || vm.status.startedAt?.getTime() !== seen.startedAt?.getTime()) return false;
    vm.status.startFailures = starts.failures;
    if (starts.startedAt !== undefined) vm.status.startedAt = starts.startedAt && new Date(starts.startedAt);
    return true;
  }

  /** As SqlVmRepo.observe: nothing is written unless the state changes or an error (or its clearing) is given; only a change or an error is an event. */
  async observe(id: string, observation: Observation): Promise<void> {
    const vm = this.vms.get(id);
    if (!vm) return;
    const from = vm.observedState;
    const setError = observation.lastError !== undefined;
    if (from === observation.to && !setError) return;
    vm.observedState = observation.to;
    vm.updatedAt = this.clock.now();
    if (setError) vm.lastError = observation.lastError ? copy(observation.lastError) : null;
    if (from === observation.to && !observation.lastError) return;
    this.eventLog.push({
      id: this.eventIds.take(),
      vmId: id,
      level: observation.level ?? (observation.lastError ? 'error' : 'info'),
      kind: from !== observation.to ? 'state_changed' : 'error',
      fromState: from,
      toState: observation.to,
      message: observation.message,
      createdAt: this.clock.now(),
    });
  }

  /** The row goes, and its events with it (ON DELETE CASCADE). */
  async delete(id: string): Promise<void> {
    this.vms.delete(id);
    for (let i = this.eventLog.length - 1; i >= 0; i--) if (this.eventLog[i]?.vmId === id) this.eventLog.splice(i, 1);
  }

  async events(id: string): Promise<VmEventRecord[]> {
    return this.sortedEvents().filter((event) => event.vmId === id);
  }

  async eventsAfter(filter: EventsFilter): Promise<VmEventRecord[]> {
    const levels = { info: ['info', 'warn', 'error'], warn: ['warn', 'error'], error: ['error'] }[filter.minLevel];
    const { at, id } = filter.after;
    // With an id, the position is that event's own time when it is still stored, `at` otherwise.
    const fromMs = (id === undefined ? undefined : this.eventLog.find((event) => event.id === id)?.createdAt.getTime()) ?? at.getTime();
    const after = (event: VmEventRecord) => {
      const ms = event.createdAt.getTime();
      return id === undefined ? ms > fromMs : ms > fromMs || (ms === fromMs && event.id > id);
    };
    return this.sortedEvents()
      .filter((event) => {
        const vm = this.vms.get(event.vmId);
        return (
          vm !== undefined &&
          levels.includes(event.level) &&
          after(event) &&
          (filter.vmId === undefined || event.vmId === filter.vmId) &&
          (filter.projects === undefined || filter.projects.includes(vm.project))
        );
      })
      .slice(0, filter.limit);
  }

  async allocations(): Promise<HostAllocation[]> {
    const byHost = new Map<string, HostAllocation>();
    for (const vm of this.vms.values()) {
      if (vm.hostId === null) continue;
      const allocation = byHost.get(vm.hostId) ?? { hostId: vm.hostId, vcpus: 0, memoryMib: 0 };
      allocation.vcpus += vm.spec.vcpu;
      allocation.memoryMib += vm.spec.mem_mib;
      byHost.set(vm.hostId, allocation);
    }
    return [...byHost.values()].sort((a, b) => compare(a.hostId, b.hostId));
  }

  async stateCounts(): Promise<Array<{ hostId: string | null; state: string; count: number }>> {
    const counts = new Map<string, { hostId: string | null; state: string; count: number }>();
    for (const vm of this.vms.values()) {
      const key = `${vm.hostId ?? ''}/${vm.observedState}`;
      const entry = counts.get(key) ?? { hostId: vm.hostId, state: vm.observedState, count: 0 };
      entry.count += 1;
      counts.set(key, entry);
    }
    return [...counts.values()];
  }

  /** What the project's VMs take now; those being deleted no longer count. */
  private usageOf(project: string): ProjectUsage {
    const usage = { vms: 0, vcpus: 0, memoryMib: 0 };
    for (const vm of this.vms.values()) {
      if (vm.project !== project || vm.desiredState === 'deleted') continue;
      usage.vms += 1;
      usage.vcpus += vm.spec.vcpu;
      usage.memoryMib += vm.spec.mem_mib;
    }
    return usage;
  }

  private sortedEvents(): VmEventRecord[] {
    return [...this.eventLog].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || compare(a.id, b.id)).map(copy);
  }
}

/** Networks in a map, with the SQL store's rules: no two overlap (in any project), names unique per project, none deleted while a VM has an address in it. */
export class MemoryNetworkRepo implements NetworkRepo {
  private readonly networks = new Map<string, NetworkRecord>();
  private readonly ids = new IdSequence('aaaa');

  constructor(
    private readonly clock: Clock,
    private readonly projects: ReadonlyMap<string, string>,
    private readonly vms: () => VmRecord[],
  ) {}

  async create(network: NewNetwork): Promise<NetworkRecord> {
    const projectId = this.projects.get(network.project);
    if (!projectId) throw new NexusError('not_found', `no project ${network.project}`);
    const clash = overlapping(checkNetworkCidr(network.cidr), [...this.networks.values()]);
    if (clash) {
      const whose = clash.project === network.project ? `network ${clash.name}` : 'a network of another project';
      throw new NexusError('conflict', `cidr ${network.cidr} overlaps ${whose} (${clash.cidr})`);
    }
    if ([...this.networks.values()].some((other) => other.project === network.project && other.name === network.name)) {
      throw new NexusError('conflict', `a network named ${network.name} already exists in project ${network.project}`);
    }
    const now = this.clock.now();
    const record: NetworkRecord = { id: this.ids.take(), projectId, vmCount: 0, resourceVersion: 1, createdAt: now, updatedAt: now, ...copy(network) };
    this.networks.set(record.id, record);
    return this.withCount(record);
  }

  async ensureDefault(project: string, pool: DefaultNetworkPool): Promise<NetworkRecord> {
    const existing = await this.byName(project, DEFAULT_NETWORK);
    if (existing) return existing;
    const block = freeBlockIn(
      pool.pool,
      pool.prefixLength,
      [...this.networks.values()].map((network) => networkBlockOf(network.cidr)),
    );
    if (!block) throw new NexusError('conflict', `no free /${pool.prefixLength} is left in the default network pool`);
    return this.create({ project, name: DEFAULT_NETWORK, cidr: formatIpv4Block(block), egress: 'allow', dns: [] });
  }

  async get(id: string): Promise<NetworkRecord | undefined> {
    const network = this.networks.get(id);
    return network && this.withCount(network);
  }

  async byName(project: string, name: string): Promise<NetworkRecord | undefined> {
    const network = [...this.networks.values()].find((other) => other.project === project && other.name === name);
    return network && this.withCount(network);
  }

  async list(projects?: string[]): Promise<NetworkRecord[]> {
    return [...this.networks.values()]
      .filter((network) => projects === undefined || projects.includes(network.project))
      .sort((a, b) => compare(a.project, b.project) || compare(a.name, b.name))
      .map((network) => this.withCount(network));
  }

  async update(id: string, change: { egress?: Egress; dns?: string[] }): Promise<NetworkRecord | undefined> {
    const network = this.networks.get(id);
    if (!network) return undefined;
    if (change.egress) network.egress = change.egress;
    if (change.dns) network.dns = [...change.dns];
    network.resourceVersion += 1;
    network.updatedAt = this.clock.now();
    return this.withCount(network);
  }

  async delete(id: string): Promise<{ deleted: boolean; usedBy: string[] }> {
    if (!this.networks.has(id)) return { deleted: false, usedBy: [] };
    const usedBy = this.users(id)
      .map((vm) => vm.name)
      .sort();
    if (usedBy.length > 0) return { deleted: false, usedBy };
    this.networks.delete(id);
    return { deleted: true, usedBy: [] };
  }

  /** A new VM's NIC and its address, as SqlVmRepo's allocateNic gives them. */
  allocate(project: string, index: number, nic: NicRequest): VmNic {
    const network = this.networks.get(nic.networkId);
    if (!network || network.project !== project) throw new NexusError('not_found', `no network ${nic.networkId} in the VM's project`);
    const used = new Map(this.users(network.id).map((vm) => [vm.nics.find((other) => other.networkId === network.id)?.ip ?? '', vm.name]));
    const ip = pickAddress({ ...networkBlockOf(network.cidr), name: network.name }, used, nic.ip);
    return { index, networkId: network.id, network: network.name, ip, cidr: network.cidr, egress: network.egress, dns: [...network.dns] };
  }

  private users(networkId: string): VmRecord[] {
    return this.vms().filter((vm) => vm.nics.some((nic) => nic.networkId === networkId));
  }

  private withCount(network: NetworkRecord): NetworkRecord {
    return copy({ ...network, vmCount: this.users(network.id).length });
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Snapshots' rows in a map, with the SQL store's rules (sql-snapshot-repo.ts): names unique per project, newest first. */
export class MemorySnapshotRepo implements SnapshotRepo {
  private readonly rows = new Map<string, SnapshotRecord>();

  constructor(
    private readonly clock: Clock,
    private readonly projects: readonly string[] = ['default', 'other'],
  ) {}

  async create(snapshot: NewSnapshot): Promise<SnapshotRecord> {
    if (!this.projects.includes(snapshot.project)) throw new NexusError('not_found', `no project ${snapshot.project}`);
    if ([...this.rows.values()].some((row) => row.project === snapshot.project && row.name === snapshot.name)) {
      throw new NexusError('conflict', `a snapshot named ${snapshot.name} already exists in project ${snapshot.project}`);
    }
    const now = this.clock.now();
    const record: SnapshotRecord = {
      ...copy(snapshot),
      projectId: `project-${snapshot.project}`,
      status: 'creating',
      driver: null,
      sizeBytes: 0,
      files: [],
      createdAt: now,
      updatedAt: now,
    };
    this.rows.set(record.id, record);
    return copy(record);
  }

  async get(id: string): Promise<SnapshotRecord | undefined> {
    const row = this.rows.get(id);
    return row && copy(row);
  }

  async list(filter: { projects?: string[]; vmId?: string }): Promise<SnapshotRecord[]> {
    return [...this.rows.values()]
      .filter((row) => (filter.projects ? filter.projects.includes(row.project) : true) && (filter.vmId ? row.vmId === filter.vmId : true))
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || a.id.localeCompare(b.id))
      .map(copy);
  }

  async markReady(id: string, taken: TakenSnapshot): Promise<SnapshotRecord | undefined> {
    const row = this.rows.get(id);
    if (!row) return undefined;
    Object.assign(row, { status: 'ready', driver: taken.driver, sizeBytes: taken.sizeBytes, files: copy(taken.files), updatedAt: this.clock.now() });
    return copy(row);
  }

  async delete(id: string): Promise<boolean> {
    return this.rows.delete(id);
  }

  async deleteOfVm(vmId: string): Promise<Array<{ id: string; hostId: string }>> {
    const doomed = [...this.rows.values()].filter((row) => row.vmId === vmId);
    for (const row of doomed) this.rows.delete(row.id);
    return doomed.map((row) => ({ id: row.id, hostId: row.hostId }));
  }

  async ids(): Promise<string[]> {
    return [...this.rows.keys()];
  }
}

/** A ready host record; `overrides` change any field, `capacity` any of its capacity's. */
export function hostRecord(overrides: Partial<Omit<HostRecord, 'capacity'>> & { capacity?: Partial<HostCapacity> } = {}): HostRecord {
  const { capacity, ...fields } = overrides;
  return {
    id: '11111111-0000-4000-8000-000000000001',
    name: 'host-1',
    address: '127.0.0.1:9090',
    status: 'ready',
    capacity: {
      vcpus: 8,
      memory_mib: 8192,
      memory_available_mib: 8192,
      run_dir: '/srv/fc',
      disk_total_mib: 100_000,
      disk_available_mib: 100_000,
      vms_running: 0,
      kvm: { usable: false },
      drivers: [],
      ...capacity,
    },
    credentialSealed: 'sealed',
    credentialHash: 'hash',
    nextCredentialHash: null,
    credentialRotatedAt: null,
    lastSeenAt: new Date(0),
    createdAt: new Date(0),
    updatedAt: new Date(0),
    ...fields,
  };
}

/** Hosts in a map: what the VM use cases and the reconciler read. Enrollment and credentials are not faked. */
export class MemoryHostRepo implements HostRepo {
  private readonly hosts = new Map<string, HostRecord>();

  constructor(hosts: readonly HostRecord[] = []) {
    for (const host of hosts) this.put(host);
  }

  /** Adds or replaces a host. */
  put(host: HostRecord): void {
    this.hosts.set(host.id, copy(host));
  }

  async list(): Promise<HostRecord[]> {
    return [...this.hosts.values()].sort((a, b) => compare(a.name, b.name)).map(copy);
  }

  async get(id: string): Promise<HostRecord | undefined> {
    const host = this.hosts.get(id);
    return host && copy(host);
  }

  createJoinToken(): never {
    throw new Error('not used by these tests');
  }

  enroll(): never {
    throw new Error('not used by these tests');
  }

  existsNamed(): never {
    throw new Error('not used by these tests');
  }

  recordHeartbeat(): never {
    throw new Error('not used by these tests');
  }

  markLateHostsUnreachable(): never {
    throw new Error('not used by these tests');
  }

  countReady(): never {
    throw new Error('not used by these tests');
  }

  beginCredentialRotation(): never {
    throw new Error('not used by these tests');
  }

  completeCredentialRotation(): never {
    throw new Error('not used by these tests');
  }
}

/**
 * Images registered by content (kind + sha256) as hosts report them, as SqlImageRepo does; feed
 * it with `syncHost`, or put a record in with `put`.
 */
export class MemoryImageRepo implements ImageRepo {
  private readonly images = new Map<string, ImageRecord>();
  /** Host id -> image id -> path on that host. */
  private readonly held = new Map<string, Map<string, string>>();
  private readonly imageIds = new IdSequence('aaaa');

  /** Registers an image held by no host (or by `paths`' hosts, at those paths); answers it. */
  put(image: Pick<ImageRecord, 'name' | 'kind'> & Partial<ImageRecord>, paths: Record<string, string> = {}): ImageRecord {
    const record: ImageRecord = {
      id: this.imageIds.take(),
      format: image.kind === 'kernel' ? 'vmlinux' : image.kind === 'initrd' ? 'cpio.gz' : 'ext4',
      sizeBytes: 1024,
      sha256: (this.images.size + 1).toString(16).padStart(64, '0'),
      bootArgs: null,
      hostIds: [],
      createdAt: new Date(0),
      updatedAt: new Date(0),
      ...image,
    };
    this.images.set(record.id, record);
    for (const [hostId, path] of Object.entries(paths)) this.holdingsOf(hostId).set(record.id, path);
    return this.withHosts(record);
  }

  async syncHost(hostId: string, images: HostImage[], now: Date): Promise<void> {
    const holdings = new Map<string, string>();
    for (const image of images) {
      let record = [...this.images.values()].find((known) => known.kind === image.kind && known.sha256 === image.sha256);
      if (record) record.updatedAt = now;
      else {
        record = {
          id: this.imageIds.take(),
          name: image.name,
          kind: image.kind,
          format: image.format,
          sizeBytes: image.size_bytes,
          sha256: image.sha256,
          bootArgs: image.boot_args ?? null,
          hostIds: [],
          createdAt: now,
          updatedAt: now,
        };
        this.images.set(record.id, record);
      }
      // Two files of one content in one report: either path serves (the first is kept).
      if (!holdings.has(record.id)) holdings.set(record.id, image.path);
    }
    this.held.set(hostId, holdings);
  }

  async list(filter: ImageFilter): Promise<ImageRecord[]> {
    return [...this.images.values()]
      .filter((image) => (filter.kind === undefined || image.kind === filter.kind) && (filter.name === undefined || image.name === filter.name))
      .sort((a, b) => compare(a.name, b.name) || compare(a.kind, b.kind) || b.createdAt.getTime() - a.createdAt.getTime())
      .map((image) => this.withHosts(image));
  }

  async get(id: string): Promise<ImageRecord | undefined> {
    const image = this.images.get(id);
    return image && this.withHosts(image);
  }

  async getMany(ids: readonly string[]): Promise<ImageRecord[]> {
    return ids.flatMap((id) => {
      const image = this.images.get(id);
      return image ? [this.withHosts(image)] : [];
    });
  }

  async locate(ids: readonly string[]): Promise<Map<string, Map<string, string>>> {
    const located = new Map<string, Map<string, string>>();
    for (const [hostId, holdings] of this.held) {
      for (const id of ids) {
        const path = holdings.get(id);
        if (path === undefined) continue;
        const paths = located.get(hostId) ?? new Map<string, string>();
        paths.set(id, path);
        located.set(hostId, paths);
      }
    }
    return located;
  }

  private holdingsOf(hostId: string): Map<string, string> {
    const holdings = this.held.get(hostId) ?? new Map<string, string>();
    this.held.set(hostId, holdings);
    return holdings;
  }

  private withHosts(image: ImageRecord): ImageRecord {
    const hostIds = [...this.held]
      .filter(([, holdings]) => holdings.has(image.id))
      .map(([hostId]) => hostId)
      .sort();
    return { ...copy(image), hostIds };
  }
}

export type GatewayMethod = keyof AgentGateway;

const GATEWAY_METHODS: readonly GatewayMethod[] = [
  'getVm',
  'ensureVm',
  'act',
  'deleteVm',
  'inventory',
  'takeSnapshot',
  'instantiateVm',
  'deleteSnapshot',
  'collectOrphans',
  'vmLogs',
  'streamVmLogs',
  'vmMetrics',
  'tailFile',
  'replaceCredential',
];

/** One host's agent, as the fake keeps it. */
interface FakeAgent {
  vms: Map<string, AgentVm>;
  /** Snapshots kept on the host, by id. */
  snapshots: Map<string, HostSnapshot>;
  orphans: Orphans;
  credentialSealed: string | null;
}

/**
 * An agent per host, in memory, applying ensure, actions and delete as the real agent does
 * (vm-service.ts): ensure records the spec (`configured` until first started) and refuses another
 * spec while the VM's VMM runs; start gives it a pid, stop takes it away. Every call is counted in
 * `calls`; `failNext` makes the next call of a method throw; `crash` ends a VMM behind the
 * manager's back.
 */
export class FakeAgentGateway implements AgentGateway {
  /** How many times each method was called (failed calls included). */
  readonly calls = Object.fromEntries(GATEWAY_METHODS.map((method) => [method, 0])) as Record<GatewayMethod, number>;
  /** Hosts whose agent does not answer: every call to them throws `unavailable`. */
  readonly unreachable = new Set<string>();
  /** What `vmLogs` and `tailFile` answer: the last lines of the console. */
  consoleLines: string[] = [];
  private readonly agents = new Map<string, FakeAgent>();
  private readonly failures = new Map<GatewayMethod, NexusError[]>();
  private nextPid = 1000;

  constructor(
    /** The VMM a spec without `driver` gets. */
    private readonly defaultDriver: VmmName = 'qemu',
    private readonly runDir = '/srv/fc',
  ) {}

  /** Makes the next call of `method` (to any host) throw `error`; several queue up in order. */
  failNext(method: GatewayMethod, error: NexusError): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), error]);
  }

  /** The VM as the agent of `hostId` has it now (a copy), or undefined. */
  vm(hostId: string, vmId: string): AgentVm | undefined {
    const vm = this.agent(hostId).vms.get(vmId);
    return vm && copy(vm);
  }

  /** Every VM the agent of `hostId` has. */
  vmsOn(hostId: string): AgentVm[] {
    return [...this.agent(hostId).vms.values()].map(copy);
  }

  /** Puts a VM on a host as if it had been ensured (and, by `state`, started) earlier. */
  seed(hostId: string, vmId: string, spec: MachineSpec, state: 'configured' | 'running' | 'paused' | 'stopped' = 'configured'): AgentVm {
    const agent = this.agent(hostId);
    const vm = this.describe(vmId, spec);
    vm.state = state;
    if (state === 'running' || state === 'paused') vm.pid = this.nextPid++;
    agent.vms.set(vmId, vm);
    return copy(vm);
  }

  /** The VMM exits on its own: the VM is stopped, with no process. */
  crash(hostId: string, vmId: string): void {
    const vm = this.agent(hostId).vms.get(vmId);
    if (!vm) throw new Error(`no VM ${vmId} on host ${hostId} to crash`);
    vm.state = 'stopped';
    vm.pid = null;
  }

  /** Leftovers the agent of `hostId` reports with its inventory. */
  setOrphans(hostId: string, orphans: Partial<Orphans>): void {
    this.agent(hostId).orphans = { dirs: [], taps: [], processes: [], sockets: [], ...copy(orphans) };
  }

  /** The credential last handed to the agent of `hostId`. */
  credentialOf(hostId: string): string | null {
    return this.agent(hostId).credentialSealed;
  }

  async getVm(target: AgentTarget, vmId: string): Promise<AgentVm | undefined> {
    const agent = this.enter('getVm', target);
    const vm = agent.vms.get(vmId);
    return vm && copy(vm);
  }

  async ensureVm(target: AgentTarget, vmId: string, spec: MachineSpec): Promise<AgentVm> {
    const agent = this.enter('ensureVm', target);
    const existing = agent.vms.get(vmId);
    if (existing && existing.pid !== null && !sameMachine(existing.spec, spec)) {
      throw new NexusError('conflict', `VM ${vmId} is running with another spec`, { suggestion: 'Stop it before changing its spec.' });
    }
    const vm = this.describe(vmId, spec);
    if (existing) {
      vm.state = existing.state;
      vm.pid = existing.pid;
      // The driver is the one the VM was first made with.
      vm.driver = existing.driver;
    }
    agent.vms.set(vmId, vm);
    return copy(vm);
  }

  async act(target: AgentTarget, vmId: string, action: 'start' | 'stop' | 'pause' | 'resume' | 'hibernate' | 'wake'): Promise<AgentVm> {
    const agent = this.enter('act', target);
    const vm = agent.vms.get(vmId);
    if (!vm) throw new NexusError('not_found', `no VM ${vmId} on this host`, { suggestion: 'PUT /agent/v1/vms/:id with a MachineSpec first.' });
    switch (action) {
      case 'start':
        // A VMM not running is launched; a paused (or spawned) one gets its vCPUs going.
        vm.pid ??= this.nextPid++;
        vm.state = 'running';
        break;
      case 'pause':
      case 'resume':
        if (vm.state !== 'running' && vm.state !== 'paused') {
          throw new NexusError('conflict', `cannot ${action} VM ${vmId}: it is ${vm.state}`, { suggestion: 'Start it first.' });
        }
        vm.state = action === 'pause' ? 'paused' : 'running';
        break;
      case 'stop':
        if (vm.pid !== null) {
          vm.pid = null;
          vm.state = 'stopped';
        }
        break;
      case 'hibernate':
        if (vm.state === 'hibernated') break;
        if (vm.state !== 'running' && vm.state !== 'paused')
          throw new NexusError('conflict', `VM ${vmId} is ${vm.state}: only a running or paused VM hibernates`);
        vm.pid = null;
        vm.state = 'hibernated';
        break;
      case 'wake':
        if (vm.state === 'running' || vm.state === 'paused') break;
        if (vm.state !== 'hibernated') throw new NexusError('conflict', `VM ${vmId} is not hibernated`);
        vm.pid = this.nextPid++;
        vm.state = 'running';
        break;
    }
    return copy(vm);
  }

  async deleteVm(target: AgentTarget, vmId: string): Promise<void> {
    const agent = this.enter('deleteVm', target);
    agent.vms.delete(vmId);
  }

  async inventory(target: AgentTarget): Promise<Inventory> {
    const agent = this.enter('inventory', target);
    return { vms: [...agent.vms.values()].map(copy), snapshots: [...agent.snapshots.keys()].sort(), orphans: copy(agent.orphans) };
  }

  /** The ids of the snapshots the agent of `hostId` keeps. */
  snapshotsOn(hostId: string): string[] {
    return [...this.agent(hostId).snapshots.keys()].sort();
  }

  /** Puts a snapshot on a host as if a take had left it there. */
  seedSnapshot(hostId: string, snapshot: HostSnapshot): void {
    this.agent(hostId).snapshots.set(snapshot.id, copy(snapshot));
  }

  async takeSnapshot(target: AgentTarget, vmId: string, request: TakeSnapshotRequest): Promise<TakeSnapshotResponse> {
    const agent = this.enter('takeSnapshot', target);
    const vm = agent.vms.get(vmId);
    if (!vm) throw new NexusError('not_found', `no VM ${vmId} on this host`);
    const taken = agent.snapshots.get(request.snapshot_id);
    if (taken && taken.vm_id !== vmId) throw new NexusError('conflict', `snapshot ${request.snapshot_id} is of another VM (${taken.vm_id})`);
    if (!taken && vm.state !== 'running' && vm.state !== 'paused') {
      throw new NexusError('conflict', `VM ${vmId} is ${vm.state}: only a running or paused VM is snapshotted`);
    }
    const dir = `${this.runDir}/snapshots/${request.snapshot_id}`;
    const snapshot: HostSnapshot = taken ?? {
      id: request.snapshot_id,
      vm_id: vmId,
      driver: vm.driver,
      created_at: new Date(0).toISOString(),
      size_bytes: vm.spec.mem_mib * 1024 * 1024 + 4096,
      state_file: `${dir}/state.bin`,
      state_size_bytes: vm.spec.mem_mib * 1024 * 1024 + 4096,
      drives: [],
      spec: copy(vm.spec),
    };
    agent.snapshots.set(snapshot.id, snapshot);
    if (request.then === 'stop') {
      vm.pid = null;
      vm.state = 'stopped';
    }
    return { snapshot: copy(snapshot), vm: copy(vm) };
  }

  async instantiateVm(target: AgentTarget, snapshotId: string, vmId: string, spec: MachineSpec): Promise<AgentVm> {
    const agent = this.enter('instantiateVm', target);
    const existing = agent.vms.get(vmId);
    if (existing) return copy(existing);
    const snapshot = agent.snapshots.get(snapshotId);
    if (!snapshot) throw new NexusError('not_found', `no snapshot ${snapshotId} on this host`);
    if (snapshot.spec.mem_mib !== spec.mem_mib || snapshot.spec.vcpu !== spec.vcpu) {
      throw new NexusError('conflict', `VM ${vmId} is not the machine snapshot ${snapshotId} is of`);
    }
    const vm = this.describe(vmId, spec);
    vm.driver = snapshot.driver;
    vm.state = 'running';
    vm.pid = this.nextPid++;
    agent.vms.set(vmId, vm);
    return copy(vm);
  }

  async deleteSnapshot(target: AgentTarget, snapshotId: string): Promise<void> {
    this.enter('deleteSnapshot', target).snapshots.delete(snapshotId);
  }

  async collectOrphans(target: AgentTarget, orphans: CollectOrphansRequest): Promise<CollectOrphansResponse['removed']> {
    const agent = this.enter('collectOrphans', target);
    const held = agent.orphans;
    const removed = {
      dirs: orphans.dirs.filter((dir) => held.dirs.includes(dir)),
      taps: orphans.taps.filter((tap) => held.taps.includes(tap)),
      processes: orphans.processes.filter((pid) => held.processes.some((process) => process.pid === pid)),
      sockets: orphans.sockets.filter((socket) => held.sockets.includes(socket)),
      snapshots: orphans.snapshots.filter((id) => agent.snapshots.delete(id)),
    };
    agent.orphans = {
      dirs: held.dirs.filter((dir) => !removed.dirs.includes(dir)),
      taps: held.taps.filter((tap) => !removed.taps.includes(tap)),
      processes: held.processes.filter((process) => !removed.processes.includes(process.pid)),
      sockets: held.sockets.filter((socket) => !removed.sockets.includes(socket)),
    };
    return removed;
  }

  async vmLogs(target: AgentTarget, vmId: string, query: LogTailQuery): Promise<LogTail> {
    const agent = this.enter('vmLogs', target);
    if (!agent.vms.has(vmId)) throw new NexusError('not_found', `no VM ${vmId} on this host`);
    return { source: query.source ?? 'console', ...this.tail(query.tail ?? 200) };
  }

  async streamVmLogs(target: AgentTarget, vmId: string, query: LogStreamQuery): Promise<Readable> {
    const agent = this.enter('streamVmLogs', target);
    if (!agent.vms.has(vmId)) throw new NexusError('not_found', `no VM ${vmId} on this host`);
    let offset = 0;
    const events = this.tail(query.tail ?? 0).lines.map((line) => {
      offset += Buffer.byteLength(`${line}\n`);
      return `id: ${offset}\ndata: ${line}\n\n`;
    });
    return Readable.from(events);
  }

  async vmMetrics(target: AgentTarget, vmId: string): Promise<MetricsRecent> {
    const agent = this.enter('vmMetrics', target);
    if (!agent.vms.has(vmId)) throw new NexusError('not_found', `no VM ${vmId} on this host`);
    return { items: [] };
  }

  async tailFile(target: AgentTarget, query: FileTailQuery): Promise<LogTail> {
    this.enter('tailFile', target);
    return { source: 'file', ...this.tail(query.tail ?? 200) };
  }

  async replaceCredential(target: AgentTarget, nextSealed: string): Promise<void> {
    this.enter('replaceCredential', target).credentialSealed = nextSealed;
  }

  /** Counts the call, then fails it if the test asked for that (or the host is unreachable). */
  private enter(method: GatewayMethod, target: AgentTarget): FakeAgent {
    this.calls[method] += 1;
    const failure = this.failures.get(method)?.shift();
    if (failure) throw failure;
    if (this.unreachable.has(target.hostId)) {
      throw new NexusError('unavailable', `agent ${target.hostName} (${target.address}) did not answer`, { terminal: false });
    }
    return this.agent(target.hostId);
  }

  private agent(hostId: string): FakeAgent {
    let agent = this.agents.get(hostId);
    if (!agent) {
      agent = { vms: new Map(), snapshots: new Map(), orphans: { dirs: [], taps: [], processes: [], sockets: [] }, credentialSealed: null };
      this.agents.set(hostId, agent);
    }
    return agent;
  }

  /** A VM as the agent describes it right after an ensure. */
  private describe(vmId: string, spec: MachineSpec): AgentVm {
    const layout = vmLayout(this.runDir, vmId);
    const driver = spec.driver ?? this.defaultDriver;
    const tap = spec.nics.length > 0 ? tapNameOf(vmId) : null;
    return {
      id: vmId,
      driver,
      state: 'configured',
      pid: null,
      tap,
      tap_present: tap ? true : null,
      api_socket: driver === 'firecracker' ? layout.firecrackerSocket : layout.qmpSocket,
      console_log: layout.consoleLog,
      vmm_log: layout.vmmLog,
      spec: copy(spec),
    };
  }

  private tail(lines: number): { lines: string[]; next_offset: number } {
    return {
      lines: lines === 0 ? [] : this.consoleLines.slice(-lines),
      next_offset: this.consoleLines.reduce((bytes, line) => bytes + Buffer.byteLength(`${line}\n`), 0),
    };
  }
}
