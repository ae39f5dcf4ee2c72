import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { AgentVm } from '../../contracts/agent-vm-api.js';
import { withGuestNetwork } from '../../contracts/guest-network-args.js';
import type { MachineSpec } from '../../contracts/machine-spec.js';
import { placeOnNetwork } from '../domain/network-rules.js';
import type { ObservedState } from '../../contracts/vm-api.js';
import type { Clock } from '../../kit/clock.js';
import { NexusError } from '../../kit/nexus-error.js';
import { KeyedSemaphore } from '../../kit/keyed-semaphore.js';
import { PeriodicTask } from '../../kit/periodic-task.js';
import { inBackground } from '../../kit/work-priority.js';
import { type ReconcileResult, WorkQueue } from '../../kit/work-queue.js';
import {
  type AgentView,
  type RestartBudget,
  failuresAfterExit,
  hasRunLongEnough,
  isGivenUp,
  isRetryable,
  nextStep,
  observedFromAgent,
} from '../domain/vm-lifecycle.js';
import { imageIdsOf, placedSpec } from '../domain/vm-spec.js';
import { type AgentGateway, type AgentTarget, agentTargetOf } from '../ports/agent-gateway.js';
import type { HostRepo } from '../ports/host-repo.js';
import type { ImageRepo } from '../ports/image-repo.js';
import type { StoredVmError, VmRecord, VmRepo } from '../ports/vm-repo.js';
import { placeVm } from '../scheduler/placement.js';
import type { Leadership } from '../ports/leadership.js';
import { holderName, portName } from '../domain/port-rules.js';

export interface VmReconcilerConfig {
  /** Every VM is looked at this often even without a write. Default 15 s. */
  resyncMs: number;
  /** vCPUs a host may promise per real one. Default 4. */
  vcpuOvercommit: number;
  /**
   * Consecutive failed starts (a start refused, or a VMM that exits before it has run
   * `stableRunMs`) before a VM is left `failed` until a user acts. Default 3.
   */
  startRetryBudget: number;
  /** A VMM that runs this long counts as started for good: its earlier failures are forgiven. Default 60 s. */
  stableRunMs?: number;
  /** How often to look at a VM that is on its way (starting, stopping). */
  pollMs: number;
  /** VMs reconciled at once on one host, so one busy host cannot take every worker. Default 4. */
  perHostParallelism?: number;
  /** VMs reconciled at once in all. Default 8. */
  concurrency?: number;
}

/**
 * Drives each VM's agent towards the VM's desired state, one idempotent step at a time, and
 * records what it observes. Level-triggered: `reconcile(id)` reads the row and the agent's view,
 * never the event that woke it, so duplicate wake-ups and crashes mid-step are harmless.
 */
export class VmReconciler {
  readonly queue: WorkQueue;
  private readonly resync: PeriodicTask;
  private readonly metrics: ReturnType<typeof reconcilerMetrics>;
  /** When a user last asked each VM for something, until it is done: the convergence lag. */
  private readonly askedAt = new Map<string, number>();
  private readonly hostSlots: KeyedSemaphore;

  constructor(
    private readonly vms: VmRepo,
    private readonly hosts: HostRepo,
    private readonly images: Pick<ImageRepo, 'locate'>,
    private readonly agents: AgentGateway,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: VmReconcilerConfig,
    private readonly leadership: Leadership,
  ) {
    this.metrics = reconcilerMetrics(() => this.queue.depth);
    // Only the leader reconciles; a follower drops the key (its API writes reach the leader over the
    // wake channel, and the leader's resync covers anything lost).
    this.queue = new WorkQueue((id) => (this.leadership.isLeader() ? inBackground(() => this.reconcile(id)) : Promise.resolve(undefined)), log, {
      concurrency: config.concurrency ?? 8,
    });
    this.hostSlots = new KeyedSemaphore(config.perHostParallelism ?? 4);
    this.resync = new PeriodicTask(config.resyncMs, async () => {
      if (!this.leadership.isLeader()) return;
      try {
        for (const id of await this.vms.ids()) this.queue.add(id);
      } catch (error) {
        this.log.error({ err: error }, 'resync could not list VMs');
      }
    });
  }

  /**
   * Wakes the loop for one VM (after every API write). A user action starts the convergence clock;
   * its write has renewed the VM's restart budget already (see VmRepo.setDesired).
   */
  wake(id: string, userAction = false): void {
    if (userAction && !this.askedAt.has(id)) this.askedAt.set(id, this.clock.now().getTime());
    this.queue.add(id);
  }

  start(): void {
    this.resync.start(true);
  }

  /** Publishes the queue depth, actions and convergence lag on `registry`. */
  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.metrics.queueDepth);
    registry.registerMetric(this.metrics.actions);
    registry.registerMetric(this.metrics.convergence);
  }

  async stop(): Promise<void> {
    await this.resync.stop();
    await this.queue.stop();
  }

  async reconcile(id: string): Promise<ReconcileResult> {
    let vm = await this.vms.get(id);
    if (!vm) return undefined;
    if (vm.expiresAt && vm.expiresAt <= this.clock.now() && vm.desiredState !== 'deleted') {
      await this.vms.setDesired(vm.id, 'deleted');
      await this.vms.observe(vm.id, { to: 'deleting', message: `its TTL ran out at ${vm.expiresAt.toISOString()}` });
      vm = (await this.vms.get(id)) ?? vm;
    }
    const current = vm;
    if (current.desiredState === 'deleted') return this.hostSlots.run(current.hostId ?? '', () => this.remove(current));
    const result = await this.hostSlots.run(current.hostId ?? '', () => this.converge(current));
    // An ephemeral VM is looked at again when it expires, whatever else it waits for.
    if (vm.expiresAt && result) {
      const untilExpiry = Math.max(0, vm.expiresAt.getTime() - this.clock.now().getTime());
      return { requeueAfterMs: Math.min(result.requeueAfterMs, untilExpiry) };
    }
    return result;
  }

  /**
   * One pass towards the desired state, as a sequence of named decisions: place it, check its host,
   * hold a VM given up on, count a crash, restart one whose TAP is gone, then take the next step.
   */
  private async converge(record: VmRecord): Promise<ReconcileResult> {
    let vm = record;
    // Placement records the host and its image paths: go on from a fresh read.
    if (!vm.hostId) return { requeueAfterMs: (await this.place(vm)) ? 0 : this.config.resyncMs };
    const host = await this.hosts.get(vm.hostId);
    if (!host) return this.later();
    if (host.status !== 'ready') {
      await this.observe(vm, 'unknown', `host ${host.name} is unreachable`, 'warn');
      return this.later();
    }
    const target = agentTargetOf(host);
    const agentVm = await this.agents.getVm(target, vm.id);
    const view: AgentView = agentVm?.state ?? 'absent';
    // Its driver and files as the agent says, whatever is decided next: a VM given up on shows its console too.
    if (agentVm) vm = await this.recordAgentView(vm, agentVm);
    // Out of retries: it stays failed, with the reason recorded, until a user acts.
    if (this.givenUpAndDown(vm, view)) return this.holdFailed(vm);
    if (this.crashed(vm, view)) {
      const counted = await this.countCrash(vm, target);
      if (!counted) return { requeueAfterMs: 0 }; // a user asked again meanwhile: start over from the row
      vm = counted;
      if (isGivenUp(vm.status, this.budget)) return this.later();
    } else if (agentVm) await this.observeAgent(vm, agentVm);
    if (agentVm && agentVm.pid !== null && agentVm.tap_present === false) return this.restartWithoutTap(vm, target, agentVm);
    return this.takeNextStep(vm, view, target, host.id);
  }

  /** Given up on, and its VMM is not running (never started, stopped or failed): nothing is started until a user acts. */
  private givenUpAndDown(vm: VmRecord, view: AgentView): boolean {
    return isGivenUp(vm.status, this.budget) && vm.desiredState === 'running' && (view === 'configured' || view === 'stopped' || view === 'failed');
  }

  /** Keeps a VM given up on `failed`, its error kept (it may have been seen otherwise meanwhile, its host lost and back). */
  private async holdFailed(vm: VmRecord): Promise<ReconcileResult> {
    if (vm.observedState !== 'failed') {
      await this.vms.observe(vm.id, {
        to: 'failed',
        message: `given up after ${vm.status.startFailures} failed starts in a row: start it again to retry`,
        level: 'warn',
      });
    }
    return this.later();
  }

  /** The VMM of a VM that should run, and did, has exited on its own. */
  private crashed(vm: VmRecord, view: AgentView): boolean {
    return vm.desiredState === 'running' && vm.observedState === 'running' && (view === 'stopped' || view === 'failed');
  }

  /**
   * Records a VMM that exited on its own. One that dies soon after starting (a guest that panics on
   * boot) is a failed start: past the budget the VM stays failed, with what its console said last,
   * instead of looping. Answers the VM with its start history as now recorded, or undefined when a
   * user renewed its budget meanwhile (nothing recorded).
   */
  private async countCrash(vm: VmRecord, target: AgentTarget): Promise<VmRecord | undefined> {
    const failures = failuresAfterExit(vm.status, this.clock.now(), this.budget);
    if (!(await this.vms.recordStarts(vm.id, { failures }, vm.status))) return undefined;
    const counted = { ...vm, status: { ...vm.status, startFailures: failures } };
    if (isGivenUp(counted.status, this.budget)) {
      const message = `the VMM exited ${failures} times soon after starting`;
      await this.vms.observe(vm.id, {
        to: 'failed',
        message,
        level: 'error',
        lastError: await this.diagnose(
          target,
          vm,
          'vmm_exited',
          message,
          'The guest stopped on its own: console_tail holds its last words (a kernel panic names its cause). Fix the kernel, boot_args or disks, then start it again.',
        ),
      });
    } else {
      await this.observe(vm, 'stopped', 'the VMM exited while the VM should run; restarting it', 'warn');
    }
    return counted;
  }

  /**
   * The VM's network device (its TAP, or its namespace's veth) was deleted under a running VMM:
   * the guest's network is cut and cannot be re-plugged. A restart plumbs it afresh.
   */
  private async restartWithoutTap(vm: VmRecord, target: AgentTarget, agentVm: AgentVm): Promise<ReconcileResult> {
    await this.vms.observe(vm.id, { to: 'stopping', message: `its network device ${agentVm.tap} is gone from the host; restarting the VM`, level: 'warn' });
    await this.agents.act(target, vm.id, 'stop', 1000);
    return { requeueAfterMs: 0 };
  }

  /** The one step the desired state and the agent's view call for, if any, and when to look again. */
  private async takeNextStep(vm: VmRecord, view: AgentView, target: AgentTarget, hostId: string): Promise<ReconcileResult> {
    if (vm.desiredState === 'deleted') return { requeueAfterMs: 0 };
    const step = nextStep(vm.desiredState, view);
    if (step === 'none') return this.settled(vm, view);
    if (step === 'wait') return { requeueAfterMs: this.config.pollMs };
    if (step === 'start' && isGivenUp(vm.status, this.budget)) return this.later();
    // A VM made from a snapshot its host does not have yet is restored from it, running, instead.
    if (step === 'ensure' && vm.spec.snapshot_id) return isGivenUp(vm.status, this.budget) ? this.later() : this.act('restore', target, vm, hostId);
    return this.act(step, target, vm, hostId);
  }

  /** The VM is as desired: the user's wait is over, and a VMM that ran long enough has its failures forgiven. */
  private async settled(vm: VmRecord, view: AgentView): Promise<ReconcileResult> {
    this.converged(vm.id);
    if (vm.status.startFailures === 0) return this.later();
    if (view === 'running' && hasRunLongEnough(vm.status, this.clock.now(), this.budget)) {
      await this.vms.recordStarts(vm.id, { failures: 0 }, vm.status);
      return this.later();
    }
    // Look again once the VMM has run long enough for its failures to be forgiven.
    return { requeueAfterMs: Math.min(this.config.resyncMs, this.budget.stableRunMs) };
  }

  /** Takes `step` against the agent and records what it says; a refusal becomes the VM's failure, an agent out of reach a retry. */
  private async act(step: AgentStep, target: AgentTarget, vm: VmRecord, hostId: string): Promise<ReconcileResult> {
    const began = this.clock.now().getTime();
    const logAction = (result: string, extra: Record<string, unknown> = {}) =>
      this.log[result === 'ok' ? 'info' : 'warn'](
        { vm_id: vm.id, host_id: hostId, action: step, result, duration_ms: this.clock.now().getTime() - began, ...extra },
        'reconcile action',
      );
    try {
      const after = await this.take(step, target, vm);
      this.metrics.actions.inc({ action: step, result: 'ok' });
      logAction('ok', { agent_state: after.state });
      await this.recordAgentView(vm, after);
      await this.observeAgent(vm, after);
      if (step === 'start' || step === 'restore' || step === 'wake') {
        await this.vms.recordStarts(vm.id, { failures: vm.status.startFailures, startedAt: this.clock.now() }, vm.status);
      }
    } catch (error) {
      const retry = isRetryable(error);
      this.metrics.actions.inc({ action: step, result: retry ? 'retry' : 'failed' });
      logAction(retry ? 'retry' : 'failed', {
        error: error instanceof NexusError ? error.code : 'internal',
        fault_message: error instanceof Error ? error.message : String(error),
      });
      if (retry || !(error instanceof NexusError)) throw error; // the work queue backs off and tries again
      const starting = step === 'start' || step === 'restore' || step === 'wake';
      const failures = starting ? vm.status.startFailures + 1 : vm.status.startFailures;
      // Not written when a user asked again meanwhile: their renewed budget stands.
      if (starting) await this.vms.recordStarts(vm.id, { failures }, vm.status);
      await this.vms.observe(vm.id, {
        to: 'failed',
        message: `${step} failed: ${error.faultMessage}`,
        level: 'error',
        lastError: await this.diagnose(target, vm, error.code, error.faultMessage, error.suggestion),
      });
      return { requeueAfterMs: Math.min(this.config.resyncMs, 1000 * 2 ** failures) };
    }
    return { requeueAfterMs: 0 };
  }

  /** One step against the agent; answers what the agent reports after it. */
  private async take(step: AgentStep, target: AgentTarget, vm: VmRecord): Promise<AgentVm> {
    switch (step) {
      case 'ensure':
        return this.agents.ensureVm(target, vm.id, machineSpecOf(vm));
      case 'restore':
        await this.observe(vm, 'starting', `restoring it from snapshot ${vm.spec.snapshot_id ?? ''}`);
        return this.agents.instantiateVm(target, vm.spec.snapshot_id ?? '', vm.id, machineSpecOf(vm));
      case 'start':
        await this.observe(vm, 'starting', 'starting the VMM');
        return this.agents.act(target, vm.id, 'start');
      case 'stop':
        await this.observe(vm, 'stopping', 'stopping the guest');
        return this.agents.act(target, vm.id, 'stop');
      case 'pause':
      case 'resume':
        return this.agents.act(target, vm.id, step);
      case 'hibernate':
        await this.observe(vm, 'stopping', 'saving its memory and ending its VMM (hibernating)');
        return this.agents.act(target, vm.id, 'hibernate');
      case 'wake': {
        await this.observe(vm, 'starting', 'waking it from hibernation');
        const began = this.clock.now().getTime();
        const woken = await this.agents.act(target, vm.id, 'wake');
        const now = this.clock.now().getTime();
        const asked = this.askedAt.get(vm.id);
        const since = asked === undefined ? '' : ` (${now - asked} ms after it was asked)`;
        await this.vms.observe(vm.id, { to: observedFromAgent(woken.state), message: `woke from hibernation in ${now - began} ms${since}` });
        return woken;
      }
    }
  }

  /**
   * Places an unplaced VM, on a host holding every image it names, and records that host's paths
   * for them, reserving there the host ports it publishes. When nothing fits it goes `failed` with
   * reason `no_capacity` (or `image_unavailable`, `port_unavailable`).
   */
  private async place(vm: VmRecord): Promise<boolean> {
    const imageIds = imageIdsOf(vm.spec);
    const wanted = (vm.spec.ports ?? []).map((port) => ({ protocol: port.protocol, hostPort: port.host_port }));
    const [hosts, allocations, located, holders] = await Promise.all([
      this.hosts.list(),
      this.vms.allocations(),
      this.images.locate(imageIds),
      this.vms.portHolders(wanted),
    ]);
    const ready = hosts.filter((host) => host.status === 'ready' && host.capacity.drivers.some((driver) => driver.available));
    const loads = ready.map((host) => {
      const used = allocations.find((allocation) => allocation.hostId === host.id);
      return {
        hostId: host.id,
        name: host.name,
        vcpus: host.capacity.vcpus,
        memoryMib: host.capacity.memory_mib,
        allocatedVcpus: used?.vcpus ?? 0,
        allocatedMemoryMib: used?.memoryMib ?? 0,
        imageIds: new Set(located.get(host.id)?.keys()),
        takenPorts: new Map(
          holders.filter((holder) => holder.hostId === host.id && holder.vmId !== vm.id).map((holder) => [portName(holder), holderName(holder, vm.project)]),
        ),
      };
    });
    const placement = placeVm({ vcpu: vm.spec.vcpu, memMib: vm.spec.mem_mib, imageIds, ports: wanted.map(portName) }, loads, this.config.vcpuOvercommit);
    if (!placement.ok) {
      await this.vms.observe(vm.id, {
        to: 'failed',
        message: placement.message,
        level: 'error',
        lastError: { reason: placement.reason, message: placement.message, at: this.clock.now().toISOString() },
      });
      return false;
    }
    const taken = await this.vms.setHost(vm.id, placement.hostId, Object.fromEntries(located.get(placement.hostId) ?? []));
    if (taken.length > 0) {
      // Another VM took one of its ports there since we looked: the next pass places it elsewhere, or says why not.
      this.log.info({ vm_id: vm.id, host_id: placement.hostId, taken: taken.map(portName) }, 'a port was taken on the chosen host meanwhile; placing again');
      return false;
    }
    this.log.info({ vm_id: vm.id, host_id: placement.hostId }, 'VM placed');
    return true;
  }

  private async remove(vm: VmRecord): Promise<ReconcileResult> {
    const host = vm.hostId ? await this.hosts.get(vm.hostId) : undefined;
    if (host && host.status !== 'ready') {
      // The agent must confirm the VM is gone; wait for it to come back.
      return this.later();
    }
    if (host) await this.agents.deleteVm(agentTargetOf(host), vm.id);
    await this.vms.delete(vm.id);
    this.metrics.actions.inc({ action: 'delete', result: 'ok' });
    this.converged(vm.id);
    this.log.info({ vm_id: vm.id, name: vm.name }, 'VM deleted');
    return undefined;
  }

  /** Records the VM's driver and files as the agent reports them, when they changed; answers the VM as now recorded. */
  private async recordAgentView(vm: VmRecord, agentVm: AgentVm): Promise<VmRecord> {
    const { status } = vm;
    if (status.driver === agentVm.driver && status.apiSocket === agentVm.api_socket && status.consoleLog === agentVm.console_log) return vm;
    await this.vms.setAgentView(vm.id, { driver: agentVm.driver, apiSocket: agentVm.api_socket, consoleLog: agentVm.console_log });
    return { ...vm, status: { ...status, driver: agentVm.driver, apiSocket: agentVm.api_socket, consoleLog: agentVm.console_log } };
  }

  /** Records the VM's state as the agent reports it (clearing the last error once it is healthy). */
  private async observeAgent(vm: VmRecord, agentVm: AgentVm): Promise<void> {
    const healthy = agentVm.state === 'running' || agentVm.state === 'paused' || agentVm.state === 'configured';
    await this.vms.observe(vm.id, {
      to: observedFromAgent(agentVm.state),
      message: `the agent reports ${agentVm.state}`,
      ...(healthy && vm.lastError ? { lastError: null } : {}),
    });
  }

  /** A VM a user asked something of has got there: how long that took. */
  private converged(id: string): void {
    const asked = this.askedAt.get(id);
    if (asked === undefined) return;
    this.askedAt.delete(id);
    this.metrics.convergence.observe((this.clock.now().getTime() - asked) / 1000);
  }

  /** Nothing to do until the next resync. */
  private later(): ReconcileResult {
    return { requeueAfterMs: this.config.resyncMs };
  }

  private get budget(): RestartBudget {
    return { starts: this.config.startRetryBudget, stableRunMs: this.config.stableRunMs ?? 60_000 };
  }

  /** The error to record, with the last lines of the guest's console (none when the agent cannot say). */
  private async diagnose(target: AgentTarget, vm: VmRecord, reason: string, message: string, suggestion: string | undefined): Promise<StoredVmError> {
    const consoleTail = await this.agents
      .vmLogs(target, vm.id, { source: 'console', tail: CONSOLE_TAIL_LINES })
      .then((tail) => tail.lines.filter((line) => line.trim() !== ''))
      .catch(() => []);
    return {
      reason,
      message,
      at: this.clock.now().toISOString(),
      ...(suggestion ? { suggestion } : {}),
      ...(consoleTail.length > 0 ? { console_tail: consoleTail } : {}),
    };
  }

  private observe(vm: VmRecord, to: ObservedState, message: string, level: 'info' | 'warn' = 'info'): Promise<void> {
    return this.vms.observe(vm.id, { to, message, level });
  }
}

/** What the reconciler asks of a VM's agent: `restore` makes a VM from its snapshot where another is ensured. */
type AgentStep = 'ensure' | 'restore' | 'start' | 'resume' | 'pause' | 'stop' | 'hibernate' | 'wake';

/** The reconciler's Prometheus families, registered by {@link VmReconciler.registerMetrics}. */
function reconcilerMetrics(depth: () => number) {
  const registers: Registry[] = [];
  return {
    queueDepth: new Gauge({
      name: 'nexus_manager_reconcile_queue_depth',
      help: 'VMs waiting for the reconciler (ready now or due later)',
      registers,
      collect() {
        this.set(depth());
      },
    }),
    actions: new Counter({
      name: 'nexus_manager_reconcile_actions_total',
      help: 'Steps the reconciler took against agents, by action and result (ok, failed, retry when the agent was out of reach)',
      labelNames: ['action', 'result'] as const,
      registers,
    }),
    convergence: new Histogram({
      name: 'nexus_manager_convergence_seconds',
      help: 'From a user asking a VM for a state (create, start, stop, delete…) to the reconciler seeing it there',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    }),
  };
}

/** Lines of the guest's console kept with an error: enough for a kernel panic and its cause. */
const CONSOLE_TAIL_LINES = 15;

/** The VMM-neutral machine the agent is asked to run; every file has its host path by now (see `place`). */
export function machineSpecOf(vm: VmRecord): MachineSpec {
  const spec = placedSpec(vm);
  const placed = (path: string | null, what: string): string => {
    if (path === null) throw new Error(`VM ${vm.id} has no host path for its ${what}: it was never placed`);
    return path;
  };
  const nic = vm.nics[0];
  const place = nic && placeOnNetwork(nic);
  // Nexus images configure eth0 from these; other guests ask the host's DHCP server for the same.
  const cmdline =
    nic && place
      ? withGuestNetwork(spec.boot_args, { ipCidr: `${place.ip}/${place.prefixLength}`, gatewayIp: place.gateway, dns: nic.dns, hostname: vm.name })
      : spec.boot_args;
  return {
    vcpu: spec.vcpu,
    mem_mib: spec.mem_mib,
    kernel: { path: placed(spec.kernel_path, 'kernel'), cmdline },
    ...(spec.initrd_path ? { initrd: { path: spec.initrd_path } } : {}),
    drives: [
      { id: 'rootfs', path: placed(spec.rootfs_path, 'rootfs'), is_root: true },
      ...spec.extra_drives.map((drive) => ({ id: drive.id, path: placed(drive.path, `drive ${drive.id}`), read_only: drive.read_only })),
    ],
    nics:
      vm.nics.length > 0
        ? vm.nics.map((each, index) => ({
            network: { id: each.networkId, cidr: each.cidr, egress: each.egress, dns: each.dns },
            ip: each.ip,
            // Published ports go to the first NIC's address.
            ...(index === 0 && spec.ports?.length ? { ports: spec.ports } : {}),
          }))
        : spec.nic
          ? [{}]
          : [],
    ...(vm.expiresAt ? { expires_at: vm.expiresAt.toISOString() } : {}),
  };
}
