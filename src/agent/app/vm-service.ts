import type { LogSource, VmMetricsRecord } from '../../contracts/observe-api.js';
import { VmMetricsFile, guestNetCounters, metricsFileOf, processUsage } from '../host/vm-metrics.js';
import { lstat, mkdir, readFile, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { pathExists, writeFileAtomically } from '../../kit/atomic-file.js';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { AgentVm, AgentVmState, CollectOrphansRequest, CollectOrphansResponse, Inventory, SnapshotInfo } from '../../contracts/agent-vm-api.js';
import { tapNameOf } from '../../contracts/host-names.js';
import type { DriveSpec, MachineSpec, RateLimit, VmmName } from '../../contracts/machine-spec.js';
import { VM_ID_PATTERN, type VmLayout, imagesDir, vmLayout, vmsDir } from '../../contracts/vm-layout.js';
import { KeyedMutex } from '../../kit/keyed-mutex.js';
import { NexusError } from '../../kit/nexus-error.js';
import { type ProcessIdentity, readProcessStartTicks } from '../../kit/process-identity.js';
import { copySparse } from '../../kit/sparse-copy.js';
import { UndoStack } from '../../kit/undo-stack.js';
import { isUnderAllowedRoot } from '../domain/path-policy.js';
import { HostSweep } from '../host/host-sweep.js';
import { scanVmmProcesses } from '../host/supervisor/vmm-process-scan.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import { SNAPSHOT_MEMORY_FILE, SNAPSHOT_STATE_FILE, type VmmDriver } from '../ports/vmm-driver.js';

export interface VmServiceConfig {
  runDir: string;
  drivers: ReadonlyMap<VmmName, VmmDriver>;
  /** Used when a spec names no driver. */
  defaultDriver: VmmName;
  /** Where jailed Firecracker processes have their roots, so a jailed VMM is found by scans too. */
  jailBase?: string;
  /** Told what garbage collection removed, for the agent's metrics. */
  onOrphansRemoved?: (removed: CollectOrphansResponse['removed']) => void;
}

/** How {@link VmService.stopAll} ends the VMs. */
export interface StopAllOptions {
  /** How many VMs are stopped at once: each stop waits on its guest, and the guests share the host's CPUs. */
  concurrency: number;
  /** How long each guest gets to power off before its VMM is ended. */
  timeoutMs: number;
  /** Once aborted, the VMMs still running are killed by pid at once instead of waiting for their guests. */
  force?: AbortSignal;
}

/** What is stored in `spec.json`: the spec with canonical paths and private drive copies, and the driver. */
interface StoredSpec {
  spec: MachineSpec;
  driver: VmmName;
}

/** Where a VM's private drive copies live; with the image store, the only place a VM's files may be. */
function drivesDir(vm: VmLayout): string {
  return join(vm.dir, 'drives');
}

/** Present once a VMM has been launched for the VM: before that a VM without a process is `configured`, after it `stopped`. */
function launchedMarker(vm: VmLayout): string {
  return join(vm.dir, 'launched');
}

function markLaunched(vm: VmLayout): Promise<void> {
  return writeFile(launchedMarker(vm), `${new Date().toISOString()}\n`);
}

function privateDrivePath(vm: VmLayout, driveId: string): string {
  return join(drivesDir(vm), `${driveId}.img`);
}

/**
 * The agent's VM use cases. Every operation on one VM is serialized, reads the world (the VM's
 * folder and its VMM) rather than remembered state, and is safe to repeat.
 */
export class VmService {
  private readonly locks = new KeyedMutex();
  /** What ends every VMM and the guest network at once, for {@link stopAll}. */
  private readonly sweep: HostSweep;

  constructor(
    private readonly config: VmServiceConfig,
    private readonly supervisor: ProcessSupervisor,
    private readonly network: HostNetwork,
    private readonly log: Logger,
  ) {
    this.sweep = new HostSweep({ runDir: config.runDir, jailBase: config.jailBase }, supervisor, network, log);
  }

  /**
   * Records the spec and prepares the host (folder, private drive copies, TAP). Repeating it with
   * the same spec changes nothing; a different spec is refused while the VM runs. A failure undoes
   * everything this call created.
   */
  ensure(id: string, requested: MachineSpec): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const driver = this.driverFor(requested.driver);
      driver.validate?.(requested);
      const existing = await this.readStored(vm);
      const process = existing ? await this.liveProcess(vm) : undefined;
      const spec = await this.resolveSpec(vm, requested, existing?.spec);
      if (existing && process && !sameMachine(existing.spec, spec)) {
        throw new NexusError('conflict', `VM ${id} is running with another spec`, { suggestion: 'Stop it before changing its spec.' });
      }
      if (spec.nics.length > 0) await this.refuseTapClash(vm);
      const undo = new UndoStack(this.log);
      try {
        if (!existing) {
          await mkdir(vm.dir, { recursive: true, mode: 0o750 });
          undo.push(`remove ${vm.dir}`, () => rm(vm.dir, { recursive: true, force: true }));
        }
        await this.makePrivateCopies(vm, requested, spec, undo);
        if (spec.nics.length > 0 && !process) {
          const existed = (await this.network.listTaps()).includes(tapNameOf(id));
          await this.network.ensureTap(tapNameOf(id), await driver.vmmUser?.(vm));
          if (!existed) undo.push(`delete TAP ${tapNameOf(id)}`, () => this.network.deleteTap(tapNameOf(id)));
        }
        await writeFileAtomically(vm.specFile, JSON.stringify({ spec, driver: driver.name } satisfies StoredSpec, null, 2), 0o640);
        return await this.describe(vm);
      } catch (error) {
        await undo.unwind();
        throw error;
      }
    });
  }

  /**
   * The PRD's fine-grained step: makes (or remakes) the VM's TAP, attached to the bridge. The VM
   * must be ensured with a NIC, and not running (its VMM holds the TAP).
   */
  ensureTap(id: string): Promise<{ tap: string }> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      if (stored.spec.nics.length === 0) throw new NexusError('conflict', `VM ${id} has no NIC`, { suggestion: 'Ensure it with nics: [{}].' });
      if (!(await this.liveProcess(vm))) await this.network.ensureTap(tapNameOf(id), await this.driverFor(stored.driver).vmmUser?.(vm));
      return { tap: tapNameOf(id) };
    });
  }

  /**
   * The PRD's fine-grained step: starts the VMM process with the guest not yet running (QEMU
   * `-S`, Firecracker before InstanceStart); `resume` (or `start`) boots it. Idempotent.
   */
  spawn(id: string): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      if (!(await this.liveProcess(vm))) await this.launch(vm, stored, { paused: true });
      return this.describe(vm);
    });
  }

  /** Changes a drive's throttle: at once on a running VM, and in the spec for every later start. */
  updateDriveRateLimit(id: string, driveId: string, limit: RateLimit): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      const driver = this.driverFor(stored.driver);
      if (!stored.spec.drives.some((drive) => drive.id === driveId)) {
        throw new NexusError('not_found', `VM ${id} has no drive ${driveId}`, { suggestion: `Its drives: ${stored.spec.drives.map((d) => d.id).join(', ') || 'none'}.` });
      }
      if (!driver.capabilities.driveRateLimits) throw new NexusError('conflict', `the ${driver.name} driver cannot limit drives`);
      if (await this.liveProcess(vm)) await driver.updateDriveRateLimit(vm, driveId, limit);
      const spec = { ...stored.spec, drives: stored.spec.drives.map((drive) => (drive.id === driveId ? { ...drive, rate_limit: limit } : drive)) };
      await writeFileAtomically(vm.specFile, JSON.stringify({ spec, driver: stored.driver } satisfies StoredSpec, null, 2), 0o640);
      return this.describe(vm);
    });
  }

  act(id: string, action: 'start' | 'pause' | 'resume' | 'stop', timeoutMs = 10_000): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      const driver = this.driverFor(stored.driver);
      const process = await this.liveProcess(vm);
      switch (action) {
        case 'start':
          if (!process) {
            await this.launch(vm, stored, { paused: false });
            this.log.info({ vm_id: id, driver: driver.name }, 'VM started');
          } else if ((await driver.inspect(vm, process)) === 'paused') {
            // Spawned (or paused): starting means running its vCPUs.
            await driver.resume(vm);
          }
          break;
        case 'pause':
        case 'resume': {
          if (!driver.capabilities.pause) throw new NexusError('conflict', `the ${driver.name} driver cannot pause`);
          const state = await driver.inspect(vm, process);
          if (state !== 'running' && state !== 'paused') {
            throw new NexusError('conflict', `cannot ${action} VM ${id}: it is ${state}`, { suggestion: 'Start it first.' });
          }
          if (action === 'pause' && state === 'running') await driver.pause(vm);
          if (action === 'resume' && state === 'paused') await driver.resume(vm);
          break;
        }
        case 'stop':
          if (process) {
            await driver.stop(vm, process, timeoutMs);
            await this.supervisor.forget(vm);
            this.log.info({ vm_id: id }, 'VM stopped');
          }
          break;
      }
      return this.describe(vm);
    });
  }

  /** Saves a paused VM: VMM state plus a copy of every writable drive taken at the same moment. */
  snapshot(id: string): Promise<{ vm: AgentVm; snapshot: SnapshotInfo }> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      const driver = this.driverFor(stored.driver);
      if (!driver.capabilities.snapshot) throw new NexusError('conflict', `the ${driver.name} driver cannot snapshot`);
      if (!(await this.liveProcess(vm))) throw new NexusError('conflict', `VM ${id} is not running`, { suggestion: 'Start and pause it first.' });
      const snapshotId = `s-${Date.now().toString(36)}`;
      const dir = join(vm.snapshotsDir, snapshotId);
      const undo = new UndoStack(this.log);
      undo.push(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
      try {
        const files = await driver.snapshot(vm, dir);
        const drives: SnapshotInfo['drives'] = [];
        for (const drive of stored.spec.drives.filter((d) => !d.read_only)) {
          const copy = snapshotDrivePath(dir, drive.id);
          await copySparse(drive.path, copy);
          drives.push({ id: drive.id, path: copy, size_bytes: (await stat(copy)).size });
        }
        const snapshot: SnapshotInfo = { snapshot_id: snapshotId, state_file: files.stateFile, size_bytes: files.sizeBytes, drives };
        if (files.memoryFile) snapshot.memory_file = files.memoryFile;
        await writeFileAtomically(join(dir, 'snapshot.json'), JSON.stringify(snapshot, null, 2), 0o640);
        return { vm: await this.describe(vm), snapshot };
      } catch (error) {
        await undo.unwind();
        throw error;
      }
    });
  }

  /**
   * Replaces a stopped VM's guest with a snapshot of it, in a fresh VMM process, and resumes it.
   * The VM's disks are kept aside until the restore has worked, and put back if it has not.
   */
  restore(id: string, snapshotId: string): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      const driver = this.driverFor(stored.driver);
      if (await this.liveProcess(vm)) {
        throw new NexusError('conflict', `VM ${id} is running`, { suggestion: 'Stop it before restoring a snapshot into it.' });
      }
      // Every path comes from the layout, none from snapshot.json: the VM's folder is not trusted input.
      const dir = join(vm.snapshotsDir, snapshotId);
      const stateFile = join(dir, SNAPSHOT_STATE_FILE);
      const memoryFile = join(dir, SNAPSHOT_MEMORY_FILE);
      if (!(await pathExists(stateFile))) throw new NexusError('not_found', `VM ${id} has no snapshot ${snapshotId}`);
      const undo = new UndoStack(this.log);
      try {
        // Disks are not in the VMM stream: put back the copies taken with it, keeping the current ones aside.
        for (const drive of stored.spec.drives.filter((d) => !d.read_only)) {
          const saved = snapshotDrivePath(dir, drive.id);
          if (!(await pathExists(saved))) continue;
          const aside = `${drive.path}.before-restore`;
          await rename(drive.path, aside);
          undo.push(`put back ${drive.path}`, () => rename(aside, drive.path));
          await copySparse(saved, drive.path);
        }
        await this.checkStoredPaths(vm, stored.spec);
        for (const nic of stored.spec.nics.slice(0, 1)) if (nic) await this.network.ensureTap(tapNameOf(id), await driver.vmmUser?.(vm));
        await markLaunched(vm);
        const process = await driver.restore(vm, stored.spec, {
          stateFile,
          ...((await pathExists(memoryFile)) ? { memoryFile } : {}),
          sizeBytes: (await stat(stateFile)).size,
        });
        undo.push('stop the restored VMM', async () => {
          await driver.stop(vm, process, 0);
          await this.supervisor.forget(vm);
        });
        await driver.resume(vm);
      } catch (error) {
        await undo.unwind();
        throw error;
      }
      for (const drive of stored.spec.drives) await rm(`${drive.path}.before-restore`, { force: true });
      this.log.info({ vm_id: id, snapshot_id: snapshotId }, 'VM restored');
      return this.describe(vm);
    });
  }

  /** Stops the VM, deletes its TAP and its folder. Deleting a VM that is not here succeeds. */
  delete(id: string, timeoutMs = 10_000): Promise<void> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.readStored(vm);
      const process = await this.liveProcess(vm);
      if (process) await this.driverFor(stored?.driver).stop(vm, process, timeoutMs);
      // A VMM running from this folder that no pid file names is still this VM's: end it too.
      for (const stray of (await scanVmmProcesses(this.config.runDir, this.config.jailBase)).filter((entry) => entry.vmId === id)) {
        const startTicks = await readProcessStartTicks(stray.pid);
        if (startTicks === undefined) continue;
        await this.supervisor.signal({ pid: stray.pid, startTicks }, 'SIGKILL');
        await this.supervisor.waitForExit({ pid: stray.pid, startTicks }, 5000);
      }
      await this.supervisor.forget(vm);
      await this.config.drivers.get(stored?.driver ?? this.config.defaultDriver)?.release?.(vm);
      await this.network.deleteTap(tapNameOf(id));
      await rm(vm.dir, { recursive: true, force: true });
      this.log.info({ vm_id: id }, 'VM deleted');
    });
  }

  /**
   * Ends every VMM of this run dir, then removes the VMs' host network (their TAPs, then the bridge
   * and its NAT when nothing else uses them); the VM folders, disks included, stay for the next
   * start. For an agent whose VMs end with it (`nexus dev`). Each VM gets its driver's stop (the
   * guest's power button first), `concurrency` at a time; then the host sweep kills whatever still
   * runs (a failed stop, a VMM no pid file names) by pid and removes the network. Returns only once
   * no VMM is left; throws when that, or removing the network, failed.
   */
  async stopAll(options: StopAllOptions): Promise<void> {
    const ids = await this.vmIds();
    let running = 0;
    for (const id of ids) if (await this.supervisor.adopt(this.layout(id))) running++;
    this.log.info({ vms: running, concurrency: options.concurrency }, `stopping ${running} VMs`);
    // Every VM, not only the running ones: a stop waits for the VM's lock, so an operation still
    // under way (a start) finishes first and its VMM is stopped too.
    const queue = [...ids];
    const stopNext = async (): Promise<void> => {
      for (let id = queue.shift(); id !== undefined && !options.force?.aborted; id = queue.shift()) {
        await this.act(id, 'stop', options.timeoutMs).then(
          () => undefined,
          (error: unknown) => {
            // A folder whose ensure failed meanwhile has no spec any more: nothing of it runs.
            if ((error as NexusError).code !== 'not_found') this.log.error({ err: error, vm_id: id }, 'could not stop a VM; its VMM is killed');
          },
        );
      }
    };
    const stops = Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, queue.length)) }, stopNext));
    // Forced, the stops under way are not waited for: the sweep kills their VMMs.
    const forced = await Promise.race([stops.then(() => false), whenAborted(options.force).then(() => true)]);
    if (forced) this.log.warn({ vms: running }, 'forced: killing the VMMs still running instead of waiting for their guests');
    await this.sweep.sweep();
    this.log.info({ vms: running }, 'every VMM has exited and the guest network is removed');
  }

  private async vmIds(): Promise<string[]> {
    return (await readdir(vmsDir(this.config.runDir)).catch(() => [] as string[])).filter((name) => VM_ID_PATTERN.test(name));
  }

  get(id: string): Promise<AgentVm> {
    return this.locks.run(id, async () => this.describe(this.layout(id)));
  }

  /**
   * Where a VM's log of `source` is: the guest console, or the VMM's own log (Firecracker's
   * logger file; QEMU's standard error). A VM the agent does not have is a 404.
   */
  async logFile(id: string, source: LogSource): Promise<{ path: string; vmDir: string }> {
    const vm = this.layout(id);
    const stored = await this.requireStored(vm);
    if (source === 'console') return { path: vm.consoleLog, vmDir: vm.dir };
    return { path: stored.driver === 'firecracker' ? join(vm.logsDir, 'firecracker.log') : vm.vmmLog, vmDir: vm.dir };
  }

  /**
   * Appends one metrics record for every VM whose VMM runs: the VMM's block counters, the
   * process's CPU time and memory, the TAP's counters. A VM that stops meanwhile is skipped.
   */
  async sampleMetrics(now: () => Date = () => new Date()): Promise<number> {
    const names = await readdir(vmsDir(this.config.runDir)).catch(() => [] as string[]);
    let sampled = 0;
    for (const id of names.filter((name) => VM_ID_PATTERN.test(name))) {
      const vm = this.layout(id);
      try {
        const stored = await this.readStored(vm);
        const process = stored && (await this.supervisor.adopt(vm));
        const driver = stored && this.config.drivers.get(stored.driver);
        if (!stored || !process || !driver) continue;
        const [vmm, usage, net] = await Promise.all([
          driver.sampleMetrics(vm),
          processUsage(process.pid),
          guestNetCounters(stored.spec.nics.length > 0 ? tapNameOf(id) : null),
        ]);
        if (!usage) continue;
        await new VmMetricsFile(metricsFileOf(vm)).append({
          at: now().toISOString(),
          vmm: stored.driver,
          vcpu_seconds: usage.cpuSeconds,
          rss_bytes: usage.rssBytes,
          block: vmm.block,
          net,
          raw: vmm.raw,
        });
        sampled++;
      } catch (error) {
        // Stopping, or not answering for a moment: the next round samples it again.
        this.log.debug({ err: error, vm_id: id }, 'could not sample VM metrics');
      }
    }
    return sampled;
  }

  /** The VM's metrics records of the last `seconds`; a VM the agent does not have is a 404. */
  async recentMetrics(id: string, seconds: number, now = new Date()): Promise<VmMetricsRecord[]> {
    const vm = this.layout(id);
    await this.requireStored(vm);
    return new VmMetricsFile(metricsFileOf(vm)).recent(seconds, now);
  }

  /** Every VM folder on the host, and what belongs to no VM (for the manager's garbage collection). */
  async inventory(): Promise<Inventory> {
    const root = vmsDir(this.config.runDir);
    let names: string[] = [];
    try {
      names = await readdir(root);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const vms: AgentVm[] = [];
    const orphans: Inventory['orphans'] = { dirs: [], taps: [], processes: [], sockets: [] };
    for (const name of names.sort()) {
      // Only a folder with no spec at all is an orphan: an unreadable VM is reported by its error, never collected.
      if (!VM_ID_PATTERN.test(name) || !(await pathExists(join(root, name, 'spec.json')))) {
        if (!name.startsWith('.')) orphans.dirs.push(join(root, name));
        continue;
      }
      try {
        const vm = await this.get(name);
        vms.push(vm);
        if (vm.pid === null && (await pathExists(vm.api_socket))) orphans.sockets.push(vm.api_socket);
      } catch (error) {
        this.log.error({ err: error, vm_id: name }, 'a VM folder could not be read; it is left alone');
      }
    }
    const ownTaps = new Set(names.filter((name) => VM_ID_PATTERN.test(name)).map(tapNameOf));
    orphans.taps = (await this.network.listTaps()).filter((tap) => !ownTaps.has(tap));
    for (const process of await scanVmmProcesses(this.config.runDir, this.config.jailBase)) {
      if (!VM_ID_PATTERN.test(process.vmId)) continue;
      // Re-read the pid file now: a VMM started since the listing above is not an orphan.
      const recorded = await this.supervisor.adopt(vmLayout(this.config.runDir, process.vmId));
      if (recorded?.pid !== process.pid) orphans.processes.push({ pid: process.pid, vm_id: process.vmId, command: process.command });
    }
    // What drivers made outside VM folders (jails) for VMs that have no folder now.
    for (const driver of new Set(this.config.drivers.values())) {
      orphans.dirs.push(...((await driver.leftoverDirs?.((vmId) => pathExists(vmLayout(this.config.runDir, vmId).dir))) ?? []));
    }
    return { vms, orphans };
  }

  /**
   * Deletes every VM whose spec's `expires_at` has passed: ephemeral VMs end on time even while
   * the manager is down. Answers the ids deleted.
   */
  async expireDue(now: Date): Promise<string[]> {
    const names = await readdir(vmsDir(this.config.runDir)).catch(() => [] as string[]);
    const expired: string[] = [];
    for (const name of names.filter((entry) => VM_ID_PATTERN.test(entry))) {
      const stored = await this.readStored(vmLayout(this.config.runDir, name)).catch(() => undefined);
      const expiresAt = stored?.spec.expires_at;
      if (!expiresAt || Date.parse(expiresAt) > now.getTime()) continue;
      await this.delete(name, 3000);
      this.log.info({ vm_id: name, expires_at: expiresAt }, 'VM expired: deleted by the agent');
      expired.push(name);
    }
    return expired;
  }

  /**
   * Removes leftovers the manager names, in a fixed order (VMM processes, TAPs, sockets, folders),
   * but only those the inventory still reports as orphans now: a resource that became a VM's in
   * the meantime is left alone.
   */
  async collectOrphans(request: CollectOrphansRequest): Promise<CollectOrphansResponse['removed']> {
    const { orphans } = await this.inventory();
    const removed: CollectOrphansResponse['removed'] = { dirs: [], taps: [], processes: [], sockets: [] };
    for (const pid of request.processes) {
      if (!orphans.processes.some((entry) => entry.pid === pid)) continue;
      const startTicks = await readProcessStartTicks(pid);
      if (startTicks === undefined) continue;
      await this.supervisor.signal({ pid, startTicks }, 'SIGKILL');
      if (await this.supervisor.waitForExit({ pid, startTicks }, 5000)) removed.processes.push(pid);
    }
    for (const tap of request.taps.filter((name) => orphans.taps.includes(name))) {
      await this.network.deleteTap(tap);
      removed.taps.push(tap);
    }
    for (const socket of request.sockets.filter((path) => orphans.sockets.includes(path))) {
      await rm(socket, { force: true });
      removed.sockets.push(socket);
    }
    for (const dir of request.dirs.filter((path) => orphans.dirs.includes(path))) {
      await rm(dir, { recursive: true, force: true });
      removed.dirs.push(dir);
    }
    if (Object.values(removed).some((list) => list.length > 0)) this.log.info({ removed }, 'orphans removed');
    this.config.onOrphansRemoved?.(removed);
    return removed;
  }

  private async describe(vm: VmLayout): Promise<AgentVm> {
    const stored = await this.requireStored(vm);
    const driver = this.config.drivers.get(stored.driver);
    const process: ProcessIdentity | undefined = await this.supervisor.adopt(vm);
    let state: AgentVmState;
    if (!driver) state = 'failed';
    else {
      const vmmState = await driver.inspect(vm, process);
      state = vmmState === 'stopped' && !(await pathExists(launchedMarker(vm))) ? 'configured' : vmmState;
    }
    return {
      id: vm.id,
      driver: stored.driver,
      state,
      pid: process?.pid ?? null,
      tap: stored.spec.nics.length > 0 ? tapNameOf(vm.id) : null,
      tap_present: stored.spec.nics.length > 0 ? (await this.network.listTaps()).includes(tapNameOf(vm.id)) : null,
      api_socket: stored.driver === 'qemu' ? vm.qmpSocket : vm.firecrackerSocket,
      console_log: vm.consoleLog,
      vmm_log: vm.vmmLog,
      spec: stored.spec,
    };
  }

  /** Starts the VMM for the stored spec, after checking its files again (the folder is not trusted). */
  private async launch(vm: VmLayout, stored: StoredSpec, options: { paused: boolean }): Promise<void> {
    await this.checkStoredPaths(vm, stored.spec);
    if (stored.spec.nics.length > 0) await this.network.ensureTap(tapNameOf(vm.id), await this.driverFor(stored.driver).vmmUser?.(vm));
    await rm(vm.consoleLog, { force: true });
    await markLaunched(vm);
    await this.driverFor(stored.driver).start(vm, stored.spec, options);
  }

  /** The VM's live process; a pid file naming a dead one is cleared (with its cgroup) on the way. */
  private async liveProcess(vm: VmLayout): Promise<ProcessIdentity | undefined> {
    const process = await this.supervisor.adopt(vm);
    if (!process && (await pathExists(vm.pidFile))) await this.supervisor.forget(vm);
    return process;
  }

  /**
   * The spec to store: every path canonical and inside the allowed roots, and each writable drive
   * taken from the image store replaced by the VM's private copy (images are never written by a
   * guest). A private copy that exists already is kept, so a re-ensure does not need the image.
   */
  private async resolveSpec(vm: VmLayout, requested: MachineSpec, existing: MachineSpec | undefined): Promise<MachineSpec> {
    const images = await canonical(imagesDir(this.config.runDir));
    const kernel = await this.allowedFile(vm, 'kernel', requested.kernel.path);
    const initrd = requested.initrd ? await this.allowedFile(vm, 'initrd', requested.initrd.path) : undefined;
    const drives: DriveSpec[] = [];
    for (const drive of requested.drives) {
      const privatePath = privateDrivePath(vm, drive.id);
      const rateLimit = drive.rate_limit ?? existing?.drives.find((d) => d.id === drive.id)?.rate_limit;
      const withLimit = (path: string): DriveSpec => ({ ...drive, path, ...(rateLimit ? { rate_limit: rateLimit } : {}) });
      if (!drive.read_only && (await pathExists(privatePath)) && isUnderAllowedRoot(await canonicalAncestor(drive.path), [images, await canonical(drivesDir(vm))])) {
        drives.push(withLimit(privatePath));
        continue;
      }
      const path = await this.allowedFile(vm, `drive ${drive.id}`, drive.path);
      drives.push(withLimit(!drive.read_only && isUnderAllowedRoot(path, [images]) ? privatePath : path));
    }
    return {
      ...requested,
      kernel: { ...requested.kernel, path: kernel },
      ...(initrd ? { initrd: { path: initrd } } : {}),
      drives,
      nics: requested.nics.map(() => ({})),
    };
  }

  /** Copies each image-store drive into the VM's folder, once. */
  private async makePrivateCopies(vm: VmLayout, requested: MachineSpec, spec: MachineSpec, undo: UndoStack): Promise<void> {
    for (const [index, drive] of spec.drives.entries()) {
      const source = requested.drives[index]?.path;
      if (source === undefined || drive.path !== privateDrivePath(vm, drive.id) || (await pathExists(drive.path))) continue;
      await mkdir(drivesDir(vm), { recursive: true });
      await copySparse(await realpath(source), drive.path);
      undo.push(`remove ${drive.path}`, () => rm(drive.path, { force: true }));
    }
  }

  /** Checks a stored spec's files again before a VMM opens them. */
  private async checkStoredPaths(vm: VmLayout, spec: MachineSpec): Promise<void> {
    await this.allowedFile(vm, 'kernel', spec.kernel.path);
    if (spec.initrd) await this.allowedFile(vm, 'initrd', spec.initrd.path);
    for (const drive of spec.drives) await this.allowedFile(vm, `drive ${drive.id}`, drive.path);
  }

  /**
   * The canonical path of a file a VM may be given: under the image store or the VM's own
   * `drives/` (never elsewhere in its folder: spec.json, pid and snapshots are the agent's).
   */
  private async allowedFile(vm: VmLayout, what: string, path: string): Promise<string> {
    const roots = [await canonical(imagesDir(this.config.runDir)), await canonical(drivesDir(vm))];
    return fileUnder(path, roots, what, { missing: 'Build or upload the image first (`nexus image build`).', blockDevices: true });
  }

  /** A file under the VM folders (`<run-dir>/vms/`), canonical, for the dev-mode log tail by path: anything else is a 403. */
  async vmFolderFile(path: string): Promise<string> {
    if (!isAbsolute(path)) throw new NexusError('bad_request', `the log path ${path} is not absolute`, { suggestion: 'Give an absolute path.' });
    return fileUnder(path, [await canonical(vmsDir(this.config.runDir))], 'log', { missing: 'GET /v1/vms/:id names its console_log.', blockDevices: false });
  }

  /** TAP names carry 32 bits of the id: refuse a VM whose TAP name another VM here already has. */
  private async refuseTapClash(vm: VmLayout): Promise<void> {
    const names = await readdir(vmsDir(this.config.runDir)).catch(() => [] as string[]);
    const clash = names.find((name) => name !== vm.id && VM_ID_PATTERN.test(name) && tapNameOf(name) === tapNameOf(vm.id));
    if (clash) {
      throw new NexusError('conflict', `VM ${clash} on this host already uses TAP ${tapNameOf(vm.id)}`, {
        suggestion: 'Create the VM with another id (the TAP name comes from its first 8 hex digits).',
      });
    }
  }

  private driverFor(name: VmmName | undefined): VmmDriver {
    const chosen = name ?? this.config.defaultDriver;
    const driver = this.config.drivers.get(chosen);
    if (!driver) {
      throw new NexusError('conflict', `the ${chosen} driver is not available on this host`, {
        suggestion: `Available: ${[...this.config.drivers.keys()].join(', ') || 'none'}; GET /agent/v1/capacity says why.`,
      });
    }
    return driver;
  }

  private layout(id: string): VmLayout {
    if (!VM_ID_PATTERN.test(id)) throw new NexusError('bad_request', `not a VM id: ${id}`);
    return vmLayout(this.config.runDir, id);
  }

  private readStored(vm: VmLayout): Promise<StoredSpec | undefined> {
    return readJson<StoredSpec>(vm.specFile);
  }

  /**
   * Runs `relay` against the VMM API socket the proxy may use for this VM, holding the VM's lock,
   * so a proxied call never lands between two steps of the agent's own (a snapshot's pause check
   * and its create). `requested` (default: the VM's own socket) must canonicalize (`..` and
   * symlinks resolved) into the folder of the VM's own socket. A VM whose driver has no such API
   * is a 409; a VM not running, too.
   */
  proxy<T>(id: string, requested: string | undefined, relay: (socket: string) => Promise<T>): Promise<T> {
    return this.locks.run(id, async () => relay(await this.proxySocket(id, requested)));
  }

  private async proxySocket(id: string, requested: string | undefined): Promise<string> {
    const vm = this.layout(id);
    const stored = await this.requireStored(vm);
    const driver = this.driverFor(stored.driver);
    if (!driver.apiSocket) {
      throw new NexusError('conflict', `VM ${id} runs on ${driver.name}, which has no API socket to proxy`, {
        suggestion: 'The proxy serves Firecracker VMs; drive this one through the agent API (actions, drives).',
      });
    }
    const own = await driver.apiSocket(vm);
    const wanted = requested ?? own;
    const refuse = () =>
      new NexusError('forbidden', `${wanted} is not the API socket of VM ${id}`, { suggestion: `Omit sock=, or give ${own}.` });
    // The folder the VM's socket really lives in: its sock/ folder, or its jail when jailed.
    const ownResolved = await realpath(own).catch(() => undefined);
    const ownDirs = [await canonical(dirname(own)), ...(ownResolved ? [dirname(ownResolved)] : [])];
    if (!isAbsolute(wanted) || !isUnderAllowedRoot(await canonicalAncestor(wanted), ownDirs)) throw refuse();
    const resolved = await realpath(wanted).catch(() => undefined);
    if (resolved !== undefined && !ownDirs.some((allowed) => dirname(resolved) === allowed)) throw refuse();
    if (!(await this.liveProcess(vm)) || resolved === undefined) {
      throw new NexusError('conflict', `VM ${id} is not running: no VMM answers on ${wanted}`, { suggestion: 'Start it first.' });
    }
    // A socket, not something put in its place (a jailed VMM owns the folder its socket is in).
    if (!(await lstat(resolved)).isSocket()) throw refuse();
    // Connect through the VM's own short path when that is the socket meant (a jail's host path can be too long for a socket).
    return resolved === ownResolved ? own : resolved;
  }

  private async requireStored(vm: VmLayout): Promise<StoredSpec> {
    const stored = await this.readStored(vm);
    if (!stored) throw new NexusError('not_found', `no VM ${vm.id} on this host`, { suggestion: 'PUT /agent/v1/vms/:id with a MachineSpec first.' });
    return stored;
  }
}

/** Resolves once `signal` is aborted; never without one. */
function whenAborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) resolve();
    else signal?.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Two specs describe the same machine: drive throttles may differ (they change at runtime). */
function sameMachine(a: MachineSpec, b: MachineSpec): boolean {
  const strip = (spec: MachineSpec) => ({ ...spec, drives: spec.drives.map(({ rate_limit: _limit, ...drive }) => drive) });
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
}

function snapshotDrivePath(snapshotDir: string, driveId: string): string {
  return join(snapshotDir, `drive-${driveId}.img`);
}

/**
 * The canonical path of `path` if it is a file under one of `roots` (canonical): a 403 otherwise.
 * A path that does not resolve is judged by its nearest existing ancestor, so "missing" is never
 * answered for a path outside the roots: callers cannot probe the host's files.
 */
async function fileUnder(path: string, roots: string[], what: string, options: { missing: string; blockDevices: boolean }): Promise<string> {
  const resolved = await realpath(path).catch(() => undefined);
  if (!isUnderAllowedRoot(resolved ?? (await canonicalAncestor(path)), roots)) {
    throw new NexusError('forbidden', `the ${what} ${path} is outside the allowed roots`, { suggestion: `Put it under ${roots[0]}.` });
  }
  if (resolved === undefined) throw new NexusError('bad_request', `the ${what} ${path} does not exist`, { suggestion: options.missing });
  const info = await stat(resolved);
  if (!info.isFile() && !(options.blockDevices && info.isBlockDevice())) {
    throw new NexusError('bad_request', `the ${what} ${path} is not a file`, { suggestion: `Give the path of a file, not a folder.` });
  }
  return resolved;
}

async function canonical(path: string): Promise<string> {
  return realpath(path).catch(() => canonicalAncestor(path));
}

/** The canonical form of a path that may not exist: its nearest existing ancestor, resolved, plus the rest. */
async function canonicalAncestor(path: string): Promise<string> {
  const missing: string[] = [];
  let current = resolve(path);
  for (;;) {
    const found = await realpath(current).catch(() => undefined);
    if (found !== undefined) return join(found, ...missing.reverse());
    const parent = dirname(current);
    if (parent === current) return resolve(path);
    missing.push(basename(current));
    current = parent;
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`reading ${path}: ${(error as Error).message}`, { cause: error });
  }
}
