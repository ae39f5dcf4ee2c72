import {
  type CreateVmRequest,
  DEFAULT_BOOT_ARGS,
  type EventsQuery,
  type FleetEvent,
  type ObservedState,
  type Vm,
  type VmEvent,
  type VmLifecycleAction,
  type VmListQuery,
} from '../../contracts/vm-api.js';
import type { Clock } from '../../kit/clock.js';
import { macOf, nicDeviceOf } from '../../contracts/host-names.js';
import { placeOnNetwork } from '../domain/network-rules.js';
import type { NetworkManager } from './network-manager.js';
import type { SnapshotManager } from './snapshot-manager.js';
import type { InstantiateSnapshotRequest } from '../../contracts/snapshot-api.js';
import { placedSpec } from '../domain/vm-spec.js';
import { NexusError } from '../../kit/nexus-error.js';
import { parseTimestamp } from '../../kit/timestamp.js';
import { decodeCursor, encodeCursor } from '../../kit/page-cursor.js';
import { sleepUnlessAborted } from '../../kit/sleep.js';
import { DESIRED_BY_ACTION, judgeAction } from '../domain/vm-lifecycle.js';
import { type Principal, type Verb, decide, visibleProjects } from '../domain/access-policy.js';
import type { HostRecord, HostRepo } from '../ports/host-repo.js';
import type { ImageRegistry } from './image-registry.js';
import type { QuotaCheck, VmEventRecord, VmRecord, VmRepo } from '../ports/vm-repo.js';
import { checkPorts, refuseTakenPorts, shownPorts } from '../domain/port-rules.js';

export interface VmManagerConfig {
  /** `dev` accepts raw host paths for kernels and disks; production takes images by id only. */
  mode: 'production' | 'dev';
}

/** Wakes the reconciler for a VM; the API never drives an agent itself. */
export type WakeReconciler = (vmId: string, userAction: boolean) => void;

/** How often a wait looks at the VM again. */
const WAIT_POLL_MS = 100;

/** What each action waits for with `?wait=`. */
const SETTLED: Record<VmLifecycleAction, ObservedState> = {
  start: 'running',
  resume: 'running',
  stop: 'stopped',
  pause: 'paused',
  hibernate: 'hibernated',
  wake: 'running',
};

/**
 * The VM use cases behind the API: they record intent (the desired state) and wake the reconciler;
 * observing the result is the reconciler's job, which `wait` lets a caller follow.
 */
export class VmManager {
  constructor(
    private readonly vms: VmRepo,
    private readonly hosts: HostRepo,
    private readonly images: ImageRegistry,
    private readonly networks: Pick<NetworkManager, 'nicRequests'>,
    private readonly snapshots: Pick<SnapshotManager, 'deleteOfVm' | 'restorable'>,
    /** The quota rule a new VM must pass, applied by the VM store as it inserts the VM. */
    private readonly quotaCheck: (project: string, vcpu: number, memMib: number) => QuotaCheck,
    private readonly wake: WakeReconciler,
    private readonly clock: Clock,
    private readonly config: VmManagerConfig,
  ) {}

  async create(request: CreateVmRequest, caller: Principal): Promise<Vm> {
    const project = request.project ?? caller.project ?? 'default';
    if (decide(caller, 'vm', 'write', project) === 'hide') throw new NexusError('not_found', `no project ${project}`);
    const kernel = this.source('kernel', request.kernel_path, request.kernel_image_id);
    const initrd = this.source('initrd', request.initrd_path, request.initrd_image_id, { optional: true });
    const rootfs = this.source('rootfs', request.rootfs_path, request.rootfs_image_id);
    const drives = (request.extra_drives ?? []).map((drive, index) => ({
      drive,
      from: this.source(`extra_drives[${index}]`, drive.path, drive.image_id, { pathField: 'path', idField: 'image_id' }),
    }));
    const wanted = [
      ...(kernel.imageId ? [{ id: kernel.imageId, kind: 'kernel' as const, field: 'kernel_image_id' }] : []),
      ...(initrd.imageId ? [{ id: initrd.imageId, kind: 'initrd' as const, field: 'initrd_image_id' }] : []),
      ...(rootfs.imageId ? [{ id: rootfs.imageId, kind: 'rootfs' as const, field: 'rootfs_image_id' }] : []),
      ...drives.flatMap(({ from }, index) => (from.imageId ? [{ id: from.imageId, kind: 'rootfs' as const, field: `extra_drives[${index}].image_id` }] : [])),
    ];
    const images = await this.images.resolve(wanted);
    const ready = (await this.hosts.list()).filter((host) => host.status === 'ready');
    const largest = Math.max(0, ...ready.map((host) => host.capacity.memory_mib));
    if (largest > 0 && request.mem_mib > largest) {
      throw new NexusError('validation_failed', `mem_mib ${request.mem_mib} is more than the largest host has (${largest} MiB)`, {
        suggestion: `Ask for ${largest} MiB or less.`,
      });
    }
    const kernelImage = kernel.imageId ? images.get(kernel.imageId) : undefined;
    const nics = await this.networks.nicRequests(project, request.networks, request.nic);
    const ports = checkPorts(request.ports ?? [], { hasNic: nics.length > 0, callerIsAdmin: caller.role === 'admin' });
    if (ports.length > 0) {
      refuseTakenPorts(ports, await this.vms.portHolders(ports.map((port) => ({ protocol: port.protocol, hostPort: port.host_port }))), ready, project);
    }
    // The quota is checked as the VM is inserted, in one step: checked apart, racing creates all fit.
    const check = this.quotaCheck(project, request.vcpu, request.mem_mib);
    const record = await this.vms.create(
      {
        project,
        name: request.name,
        desiredState: request.desired_state ?? 'running',
        tags: request.tags ?? {},
        expiresAt: request.ttl_seconds === undefined ? null : new Date(this.clock.now().getTime() + request.ttl_seconds * 1000),
        nics,
        spec: {
          vcpu: request.vcpu,
          mem_mib: request.mem_mib,
          kernel_path: kernel.path,
          kernel_image_id: kernel.imageId,
          initrd_path: initrd.path,
          initrd_image_id: initrd.imageId,
          boot_args: request.boot_args ?? kernelImage?.bootArgs ?? DEFAULT_BOOT_ARGS,
          rootfs_path: rootfs.path,
          rootfs_image_id: rootfs.imageId,
          extra_drives: drives.map(({ drive, from }) => ({ id: drive.id, path: from.path, image_id: from.imageId, read_only: drive.read_only ?? false })),
          nic: nics.length > 0,
          ...(ports.length > 0 ? { ports } : {}),
        },
      },
      check,
    );
    this.wake(record.id, true);
    return this.toVm(record);
  }

  /**
   * A new VM made from a snapshot: the machine and disks of the VM it was taken of, restored (not
   * booted) on the host that keeps the snapshot, with addresses of its own on the same networks
   * (or on `networks`, as many), publishing no port. Its host is chosen here, as it is inserted:
   * copying a snapshot to another host is not built, so a host that is gone is a 409.
   */
  async instantiate(snapshotId: string, request: InstantiateSnapshotRequest, caller: Principal): Promise<Vm> {
    // Another project's snapshot is a 404 there; a viewer's write, a 403 before this is called.
    const snapshot = await this.snapshots.restorable(snapshotId, caller);
    const project = snapshot.project;
    const host = await this.hosts.get(snapshot.hostId);
    if (!host || host.status !== 'ready') {
      throw new NexusError(
        'conflict',
        `snapshot ${snapshot.name} is kept on host ${host?.name ?? snapshot.hostId}, which is ${host ? host.status : 'gone'}: a VM is made from a snapshot on the host that keeps it`,
        { suggestion: host ? 'Make it once the host is back.' : 'Copying snapshots across hosts is not built: snapshot a VM on a host that is here.' },
      );
    }
    const { source } = snapshot;
    if (source.spec.nic && source.nics.length === 0) {
      throw new NexusError('conflict', `snapshot ${snapshot.name} is of a VM on the host's flat bridge: a VM made from it would have no address of its own`, {
        suggestion: 'Snapshot a VM on a network.',
      });
    }
    const nics = request.networks
      ? await this.networks.nicRequests(project, request.networks, undefined)
      : source.nics.map((nic) => ({ networkId: nic.networkId }));
    if (nics.length !== source.nics.length) {
      throw new NexusError(
        'validation_failed',
        `networks: the VM snapshot ${snapshot.name} is of had ${source.nics.length} NICs, and a VM made from it has as many`,
      );
    }
    // Its host ports are its original's: a clone publishes none.
    const spec = { ...source.spec };
    delete spec.ports;
    const record = await this.vms.create(
      {
        project,
        name: request.name,
        desiredState: 'running',
        tags: request.tags ?? {},
        expiresAt: null,
        nics,
        spec: { ...spec, snapshot_id: snapshot.id },
        placement: { hostId: host.id, placedPaths: source.placedPaths },
      },
      this.quotaCheck(project, spec.vcpu, spec.mem_mib),
    );
    this.wake(record.id, true);
    return this.toVm(record);
  }

  /**
   * Where one of a new VM's files comes from: exactly one of a host path (dev mode only) and an
   * image id, or neither when the file is optional.
   */
  private source(
    file: string,
    path: string | undefined,
    imageId: string | undefined,
    options: { optional?: boolean; pathField?: string; idField?: string } = {},
  ): { path: string | null; imageId: string | null } {
    const pathField = options.pathField ? `${file}.${options.pathField}` : `${file}_path`;
    const idField = options.idField ? `${file}.${options.idField}` : `${file}_image_id`;
    if (path !== undefined && imageId !== undefined) {
      throw new NexusError('validation_failed', `give ${idField} or ${pathField}, not both`, { suggestion: `Keep ${idField}: images work in every mode.` });
    }
    if (path === undefined && imageId === undefined) {
      if (options.optional) return { path: null, imageId: null };
      throw new NexusError('validation_failed', `${idField} is required (or ${pathField}, in dev mode)`, {
        suggestion: 'GET /v1/images lists the images the hosts hold.',
      });
    }
    if (path !== undefined && this.config.mode !== 'dev') {
      throw new NexusError('forbidden', `${pathField}: raw host paths are accepted in dev mode only`, {
        suggestion: `Give ${idField} instead: GET /v1/images lists the images the hosts hold.`,
      });
    }
    return { path: path ?? null, imageId: imageId ?? null };
  }

  async get(id: string, caller: Principal): Promise<Vm> {
    return this.shown(await this.require(id, caller, 'read'));
  }

  async list(query: VmListQuery, caller: Principal): Promise<{ items: Vm[]; next_cursor: string | null }> {
    const limit = query.limit ?? 100;
    const afterName = query.cursor === undefined ? undefined : decodeCursor(query.cursor, NAME_FIELDS)[0];
    const records = await this.vms.list({
      state: query.state,
      hostId: query.host,
      namePrefix: query.name_prefix,
      afterName,
      limit,
      projects: visibleProjects(caller),
    });
    const publishing = records.some((record) => record.hostId && record.spec.ports?.length);
    const addresses = new Map(publishing ? (await this.hosts.list()).map((host) => [host.id, host.address]) : []);
    const items = records.map((record) => this.toVm(record, record.hostId ? addresses.get(record.hostId) : undefined));
    const last = records.at(-1);
    return { items, next_cursor: records.length === limit && last ? encodeCursor([last.name]) : null };
  }

  /** `ifMatch`: the resource version the caller last read (ETag); another writer since -> 412. */
  async act(id: string, action: VmLifecycleAction, caller: Principal, ifMatch?: number): Promise<void> {
    const vm = await this.require(id, caller, 'write');
    const verdict = judgeAction(action, vm.observedState, vm.desiredState);
    if (!verdict.ok) {
      throw new NexusError('conflict', `${verdict.message} (state ${vm.observedState}, desired ${vm.desiredState})`, { suggestion: verdict.suggestion });
    }
    this.checkWritten(id, await this.vms.setDesired(id, DESIRED_BY_ACTION[action], ifMatch));
    this.wake(id, true);
  }

  /**
   * Marks the VM for deletion, and deletes its snapshots unless `keepSnapshots`. An unknown VM (or
   * another project's) is a 404: a retried delete that already won reads that as done.
   */
  async delete(id: string, caller: Principal, options: { ifMatch?: number; keepSnapshots?: boolean } = {}): Promise<void> {
    await this.require(id, caller, 'write');
    this.checkWritten(id, await this.vms.setDesired(id, 'deleted', options.ifMatch));
    await this.vms.observe(id, { to: 'deleting', message: 'deletion requested' });
    this.wake(id, true);
    if (!options.keepSnapshots) await this.snapshots.deleteOfVm(id);
  }

  private checkWritten(id: string, written: VmRecord | 'stale' | undefined): void {
    if (written === 'stale') {
      throw new NexusError('precondition_failed', `VM ${id} changed since the version in If-Match`, {
        suggestion: 'GET it again, check the change, and retry with its new ETag.',
      });
    }
    if (!written) throw new NexusError('not_found', `no VM ${id}`);
  }

  /**
   * Blocks until the VM's observed state is `state`; 408 (`timeout`) with the current state
   * otherwise. Ends at once, throwing its reason, when `stop` aborts (the caller lost its access).
   */
  async waitForState(id: string, state: ObservedState, timeoutMs: number, caller: Principal, stop?: AbortSignal): Promise<Vm> {
    const deadline = this.clock.now().getTime() + timeoutMs;
    for (;;) {
      stop?.throwIfAborted();
      const vm = await this.require(id, caller, 'read');
      if (vm.observedState === state) return this.shown(vm);
      if (this.clock.now().getTime() >= deadline) {
        throw new NexusError('timeout', `VM ${id} is ${vm.observedState}, not ${state}, after ${timeoutMs / 1000} s`, {
          suggestion: vm.lastError ? `Its last error: ${vm.lastError.message}` : 'Wait longer, or GET /v1/vms/:id/events.',
        });
      }
      await pause(WAIT_POLL_MS, stop);
    }
  }

  /** One action on many VMs; each answers on its own, so one refusal does not stop the rest. */
  async bulk(
    ids: string[],
    action: VmLifecycleAction | 'delete',
    caller: Principal,
  ): Promise<Array<{ id: string; ok: boolean; error?: string; fault_message?: string }>> {
    const results = [];
    for (const id of ids) {
      try {
        if (action === 'delete') await this.delete(id, caller);
        else await this.act(id, action, caller);
        results.push({ id, ok: true });
      } catch (error) {
        if (!(error instanceof NexusError)) throw error;
        results.push({ id, ok: false, error: error.code, fault_message: error.faultMessage });
      }
    }
    return results;
  }

  async events(id: string, caller: Principal): Promise<VmEvent[]> {
    await this.require(id, caller, 'read');
    return (await this.vms.events(id)).map(toVmEvent);
  }

  /** Events across the VMs the caller may read, oldest first. */
  async fleetEvents(query: EventsQuery, caller: Principal): Promise<FleetEvent[]> {
    const since = query.since ? parseTimestamp(query.since, 'since') : new Date(this.clock.now().getTime() - 3600_000);
    const records = await this.vms.eventsAfter({
      after: { at: since },
      minLevel: query.level ?? 'info',
      projects: visibleProjects(caller),
      limit: query.limit ?? 500,
    });
    return records.map((event) => ({ ...toVmEvent(event), vm_id: event.vmId }));
  }

  /**
   * A VM's events after `after` (all, without it), for a stream that polls: undefined once the VM
   * is gone. The caller's right to read it is checked on each call.
   */
  async eventsSince(id: string, caller: Principal, after: { at: Date; id: string } | undefined): Promise<VmEvent[] | undefined> {
    const vm = await this.vms.get(id);
    if (!vm || decide(caller, 'vm', 'read', vm.project) === 'hide') return undefined;
    const records = await this.vms.eventsAfter({ after: after ?? { at: new Date(0) }, minLevel: 'info', vmId: id, limit: 1000 });
    return records.map(toVmEvent);
  }

  /**
   * Waits until the VM reaches what `action` asked for (or is gone, for a delete), at most
   * `timeoutMs`; a VM that fails on the way answers at once with its error. Ends at once,
   * throwing its reason, when `stop` aborts (the caller lost its access).
   */
  async waitFor(id: string, action: VmLifecycleAction | 'delete' | 'create', timeoutMs: number, stop?: AbortSignal): Promise<void> {
    const deadline = this.clock.now().getTime() + timeoutMs;
    for (;;) {
      stop?.throwIfAborted();
      const vm = await this.vms.get(id);
      if (action === 'delete') {
        if (!vm) return;
      } else {
        if (!vm) throw new NexusError('not_found', `VM ${id} was deleted while waiting`);
        const target = action === 'create' ? (vm.desiredState === 'stopped' ? 'configured' : 'running') : SETTLED[action];
        if (vm.observedState === target || (target === 'configured' && vm.observedState === 'stopped')) return;
        if (vm.observedState === 'failed' && vm.lastError) {
          throw new NexusError('conflict', `the VM failed: ${vm.lastError.message}`, { suggestion: 'GET /v1/vms/:id/events tells the story.' });
        }
      }
      if (this.clock.now().getTime() >= deadline) {
        throw new NexusError('timeout', `VM ${id} is ${vm?.observedState ?? 'gone'}; it did not settle within ${timeoutMs / 1000} s`, {
          suggestion: 'It is still on its way: GET /v1/vms/:id, or wait longer.',
        });
      }
      await pause(WAIT_POLL_MS, stop);
    }
  }

  /**
   * The host a VM the caller may read runs on, to ask its agent about it. A VM not placed yet is a
   * 409: nothing has run, so there is nothing to observe.
   */
  async placement(id: string, caller: Principal): Promise<{ vm: VmRecord; host: HostRecord }> {
    const vm = await this.require(id, caller, 'read');
    const host = vm.hostId ? await this.hosts.get(vm.hostId) : undefined;
    if (!host) {
      throw new NexusError('conflict', `VM ${id} is not on a host (state ${vm.observedState})`, {
        suggestion: vm.lastError ? `It never ran: ${vm.lastError.message}` : 'Wait until it is placed; GET /v1/vms/:id/events says what happened.',
      });
    }
    return { vm, host };
  }

  /** The VM, if the caller may see it: another project's VM is a 404, as if it did not exist. */
  private async require(id: string, caller: Principal, verb: Verb): Promise<VmRecord> {
    const vm = await this.vms.get(id);
    if (!vm || decide(caller, 'vm', verb, vm.project) === 'hide')
      throw new NexusError('not_found', `no VM ${id}`, { suggestion: 'GET /v1/vms lists the VMs.' });
    return vm;
  }

  /** A summary of the VM for an audit row (no caller: the audit hook has authorized the call). */
  async auditSummary(id: string): Promise<unknown> {
    const vm = await this.vms.get(id);
    return vm ? { state: vm.observedState, desired_state: vm.desiredState, project: vm.project, resource_version: vm.resourceVersion } : null;
  }

  /** The VM answer of one VM, its host looked up when it publishes ports. */
  private async shown(record: VmRecord): Promise<Vm> {
    const host = record.hostId && record.spec.ports?.length ? await this.hosts.get(record.hostId) : undefined;
    return this.toVm(record, host?.address);
  }

  /** The VM answer; `hostAddress` (its host's) says where its published ports are reachable. */
  private toVm(record: VmRecord, hostAddress?: string): Vm {
    const spec = placedSpec(record);
    return {
      id: record.id,
      name: record.name,
      project: record.project,
      host_id: record.hostId,
      desired_state: record.desiredState,
      state: record.observedState,
      vcpu: record.spec.vcpu,
      mem_mib: record.spec.mem_mib,
      kernel_image_id: record.spec.kernel_image_id ?? null,
      kernel_path: spec.kernel_path,
      initrd_image_id: record.spec.initrd_image_id ?? null,
      initrd_path: spec.initrd_path,
      boot_args: record.spec.boot_args,
      rootfs_image_id: record.spec.rootfs_image_id ?? null,
      rootfs_path: spec.rootfs_path,
      nic: record.spec.nic,
      tap: record.spec.nic ? nicDeviceOf(record.id, record.nics.length > 0) : null,
      ports: shownPorts(record.spec.ports ?? [], hostAddress),
      addresses: record.nics.map((nic) => {
        const place = placeOnNetwork(nic);
        return {
          network_id: nic.networkId,
          network: nic.network,
          ip: place.ip,
          prefix_length: place.prefixLength,
          gateway: place.gateway,
          mac: macOf(record.id),
        };
      }),
      driver: record.status.driver,
      api_socket: record.status.apiSocket,
      console_log: record.status.consoleLog,
      last_error: record.lastError,
      snapshot_id: record.spec.snapshot_id ?? null,
      tags: record.tags,
      expires_at: record.expiresAt?.toISOString() ?? null,
      resource_version: record.resourceVersion,
      created_at: record.createdAt.toISOString(),
      updated_at: record.updatedAt.toISOString(),
    };
  }
}

/** Waits `ms`, or less when `stop` aborts first (the next look throws its reason). */
function pause(ms: number, stop: AbortSignal | undefined): Promise<void> {
  return stop ? sleepUnlessAborted(ms, stop) : new Promise((resolve) => setTimeout(resolve, ms));
}

function toVmEvent(event: VmEventRecord): VmEvent {
  return {
    id: event.id,
    level: event.level,
    kind: event.kind,
    from_state: event.fromState,
    to_state: event.toState,
    message: event.message,
    created_at: event.createdAt.toISOString(),
  };
}

/** A VM list's cursor: the last name of the page. */
const NAME_FIELDS = [(name: string) => /^[a-z0-9-]{1,63}$/.test(name)];
