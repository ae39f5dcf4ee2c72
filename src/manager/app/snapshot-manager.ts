import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { HostSnapshot } from '../../contracts/agent-vm-api.js';
import type { CreateSnapshotRequest, Snapshot, SnapshotFile, SnapshotListQuery } from '../../contracts/snapshot-api.js';
import { NexusError, messageOf } from '../../kit/nexus-error.js';
import { type Principal, type Verb, decide, visibleProjects } from '../domain/access-policy.js';
import { type AgentGateway, agentTargetOf } from '../ports/agent-gateway.js';
import type { HostRecord, HostRepo } from '../ports/host-repo.js';
import type { SnapshotRecord, SnapshotRepo } from '../ports/snapshot-repo.js';
import type { VmRecord, VmRepo } from '../ports/vm-repo.js';

/**
 * Snapshots behind the API. Taking one is a call to the VM's host made while the caller waits
 * (the answer is the snapshot, whole), bracketed by its row: written `creating` before the host
 * is asked, `ready` after, deleted if the host refused. Files a host keeps without a row (a take
 * whose answer was lost, a delete while the host was away) are the orphan collector's.
 */
export class SnapshotManager {
  constructor(
    private readonly snapshots: SnapshotRepo,
    private readonly vms: Pick<VmRepo, 'get' | 'setDesired'>,
    private readonly hosts: Pick<HostRepo, 'get'>,
    private readonly agents: Pick<AgentGateway, 'takeSnapshot' | 'deleteSnapshot'>,
    /** Wakes the reconciler for a VM (see VmManager's). */
    private readonly wake: (vmId: string, userAction: boolean) => void,
    private readonly log: Logger,
    private readonly newId: () => string = randomUUID,
  ) {}

  /**
   * Captures a running or paused VM: its memory, device state and a private copy of each writable
   * disk, all of one instant. With `resume: false` the VM is stopped once captured (its desired
   * state stopped first, so the reconciler does not start it again).
   */
  async create(vmId: string, request: CreateSnapshotRequest, caller: Principal): Promise<Snapshot> {
    const vm = await this.vms.get(vmId);
    if (!vm || decide(caller, 'snapshot', 'write', vm.project) === 'hide') throw noVm(vmId);
    const host = await this.hostOf(vm);
    const id = this.newId();
    const record = await this.snapshots.create({
      id,
      project: vm.project,
      name: request.name ?? `${vm.name}-${id.slice(0, 8)}`,
      vmId: vm.id,
      vmName: vm.name,
      hostId: host.id,
      vcpu: vm.spec.vcpu,
      memMib: vm.spec.mem_mib,
      source: { spec: vm.spec, placedPaths: vm.status.placedPaths, nics: vm.nics.map((nic) => ({ networkId: nic.networkId, ip: nic.ip })) },
    });
    const resume = request.resume ?? true;
    const stopping = !resume && vm.desiredState !== 'stopped';
    if (stopping) await this.vms.setDesired(vm.id, 'stopped');
    const target = agentTargetOf(host);
    let taken: HostSnapshot;
    try {
      taken = (await this.agents.takeSnapshot(target, vm.id, { snapshot_id: id, then: resume ? 'resume' : 'stop' })).snapshot;
    } catch (error) {
      // The host removes what it wrote of a capture that failed; a lost answer leaves files the orphan collector removes.
      await this.snapshots.delete(id);
      if (stopping) await this.vms.setDesired(vm.id, vm.desiredState);
      throw error;
    }
    if (stopping) this.wake(vm.id, true);
    const ready = await this.snapshots.markReady(id, { driver: taken.driver, sizeBytes: taken.size_bytes, files: filesOf(taken) });
    if (!ready) {
      await this.removeFiles(host, id);
      throw new NexusError('conflict', `snapshot ${record.name} was deleted while it was being taken`, {
        suggestion: vm.desiredState === 'deleted' ? 'Its VM was deleted meanwhile.' : 'Take it again.',
      });
    }
    this.log.info({ snapshot_id: id, vm_id: vm.id, host_id: host.id, size_bytes: ready.sizeBytes }, 'snapshot taken');
    return toSnapshot(ready);
  }

  async get(id: string, caller: Principal): Promise<Snapshot> {
    return toSnapshot(await this.require(id, caller, 'read'));
  }

  /** The snapshots the caller may see, newest first; of one project, or one VM (which may be gone). */
  async list(query: SnapshotListQuery, caller: Principal): Promise<Snapshot[]> {
    const visible = visibleProjects(caller);
    const projects = query.project === undefined ? visible : visible === undefined || visible.includes(query.project) ? [query.project] : [];
    return (await this.snapshots.list({ projects, vmId: query.vm_id })).map(toSnapshot);
  }

  /** The snapshots of a VM the caller may see (a 404 for a VM it may not). */
  async listOfVm(vmId: string, caller: Principal): Promise<Snapshot[]> {
    const vm = await this.vms.get(vmId);
    if (!vm || decide(caller, 'snapshot', 'read', vm.project) === 'hide') throw noVm(vmId);
    return (await this.snapshots.list({ vmId })).map(toSnapshot);
  }

  /**
   * Deletes a snapshot: its row at once, then its files on its host. A host out of reach removes
   * them when it is back (the orphan collector). One being taken is a 409.
   */
  async delete(id: string, caller: Principal): Promise<void> {
    const snapshot = await this.require(id, caller, 'write');
    if (snapshot.status === 'creating') {
      throw new NexusError('conflict', `snapshot ${snapshot.name} is being taken`, { suggestion: 'Delete it once it is ready.' });
    }
    if (!(await this.snapshots.delete(id))) throw notFound(id);
    const host = await this.hosts.get(snapshot.hostId);
    if (host) await this.removeFiles(host, id);
  }

  /** Deletes the snapshots of a VM being deleted, rows then files (see {@link delete}). */
  async deleteOfVm(vmId: string): Promise<void> {
    const deleted = await this.snapshots.deleteOfVm(vmId);
    // A VM's snapshots are on its host: one host read for them all.
    const hosts = new Map<string, HostRecord | undefined>();
    for (const snapshot of deleted) {
      if (!hosts.has(snapshot.hostId)) hosts.set(snapshot.hostId, await this.hosts.get(snapshot.hostId));
      const host = hosts.get(snapshot.hostId);
      if (host) await this.removeFiles(host, snapshot.id);
    }
  }

  /**
   * A snapshot the caller may make VMs from: one of its project (404 otherwise, as for a snapshot
   * that is not there), whole (409 while it is being taken).
   */
  async restorable(id: string, caller: Principal): Promise<SnapshotRecord> {
    const snapshot = await this.require(id, caller, 'read');
    if (snapshot.status !== 'ready') {
      throw new NexusError('conflict', `snapshot ${snapshot.name} is being taken`, { suggestion: 'Make VMs from it once it is ready.' });
    }
    return snapshot;
  }

  /** A summary of the snapshot for an audit row. */
  async auditSummary(id: string): Promise<unknown> {
    const snapshot = await this.snapshots.get(id);
    return snapshot ? { project: snapshot.project, name: snapshot.name, vm_id: snapshot.vmId, status: snapshot.status } : null;
  }

  /** The ready host a VM runs on, or a 409 saying why it cannot be captured now. */
  private async hostOf(vm: VmRecord): Promise<HostRecord> {
    if (vm.desiredState === 'deleted') throw new NexusError('conflict', `VM ${vm.name} is being deleted`);
    const host = vm.hostId ? await this.hosts.get(vm.hostId) : undefined;
    if (!host || (vm.observedState !== 'running' && vm.observedState !== 'paused')) {
      throw new NexusError('conflict', `VM ${vm.name} is ${vm.observedState}: only a running or paused VM is snapshotted`, {
        suggestion: 'Start it first: a VM that is not running has no memory to capture.',
      });
    }
    if (host.status !== 'ready') {
      throw new NexusError('conflict', `the host of VM ${vm.name}, ${host.name}, is ${host.status}`, {
        suggestion: 'Take the snapshot once the host is back.',
      });
    }
    return host;
  }

  /** Asks the host to remove a snapshot's files; one out of reach has them removed when it is back. */
  private async removeFiles(host: HostRecord, id: string): Promise<void> {
    try {
      await this.agents.deleteSnapshot(agentTargetOf(host), id);
    } catch (error) {
      this.log.warn({ snapshot_id: id, host_id: host.id, err: messageOf(error) }, 'could not remove the files of a snapshot; the orphan collector will');
    }
  }

  private async require(id: string, caller: Principal, verb: Verb): Promise<SnapshotRecord> {
    const snapshot = await this.snapshots.get(id);
    if (!snapshot || decide(caller, 'snapshot', verb, snapshot.project) === 'hide') throw notFound(id);
    return snapshot;
  }
}

function noVm(id: string): NexusError {
  return new NexusError('not_found', `no VM ${id}`, { suggestion: 'GET /v1/vms lists the VMs.' });
}

function notFound(id: string): NexusError {
  return new NexusError('not_found', `no snapshot ${id}`, { suggestion: 'GET /v1/snapshots lists them.' });
}

/** The files of a snapshot as its host reported them. */
function filesOf(taken: HostSnapshot): SnapshotFile[] {
  return [
    { kind: 'state', path: taken.state_file, size_bytes: taken.state_size_bytes },
    ...(taken.memory_file ? [{ kind: 'memory' as const, path: taken.memory_file, size_bytes: taken.memory_size_bytes ?? 0 }] : []),
    ...taken.drives.map((drive) => ({ kind: 'drive' as const, drive_id: drive.id, path: drive.path, size_bytes: drive.size_bytes })),
  ];
}

function toSnapshot(record: SnapshotRecord): Snapshot {
  return {
    id: record.id,
    name: record.name,
    project: record.project,
    vm_id: record.vmId,
    vm_name: record.vmName,
    host_id: record.hostId,
    status: record.status,
    driver: record.driver,
    vcpu: record.vcpu,
    mem_mib: record.memMib,
    size_bytes: record.sizeBytes,
    files: record.files,
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  };
}
