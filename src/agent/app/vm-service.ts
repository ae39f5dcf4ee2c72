import { mkdir, readFile, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { AgentVm, AgentVmState, Inventory, SnapshotInfo } from '../../contracts/agent-vm-api.js';
import type { MachineSpec, RateLimit, VmmName } from '../../contracts/machine-spec.js';
import { KeyedMutex } from '../../kit/keyed-mutex.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { ProcessIdentity } from '../../kit/process-identity.js';
import { UndoStack } from '../../kit/undo-stack.js';
import { copySparse } from '../../kit/sparse-copy.js';
import { scanVmmProcesses } from '../host/supervisor/vmm-process-scan.js';
import { tapNameOf } from '../domain/host-names.js';
import { isUnderAllowedRoot } from '../domain/path-policy.js';
import { VM_ID_PATTERN, type VmLayout, imagesDir, vmLayout, vmsDir } from '../domain/vm-layout.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { ProcessSupervisor } from '../ports/process-supervisor.js';
import type { VmmDriver } from '../ports/vmm-driver.js';

export interface VmServiceConfig {
  runDir: string;
  drivers: ReadonlyMap<VmmName, VmmDriver>;
  /** Used when a spec names no driver. */
  defaultDriver: VmmName;
}

/** What is stored in `spec.json`: the spec as given, with the driver and private drive paths resolved. */
interface StoredSpec {
  spec: MachineSpec;
  driver: VmmName;
}

/**
 * The agent's VM use cases. Every operation on one VM is serialized, reads the world (the VM's
 * folder and its VMM) rather than remembered state, and is safe to repeat.
 */
export class VmService {
  private readonly locks = new KeyedMutex();

  constructor(
    private readonly config: VmServiceConfig,
    private readonly supervisor: ProcessSupervisor,
    private readonly network: HostNetwork,
    private readonly log: Logger,
  ) {}

  /**
   * Records the spec and prepares the host (folder, private drive copies, TAP). Repeating it with
   * the same spec changes nothing; a different spec is refused while the VM runs. A failure undoes
   * everything this call created.
   */
  ensure(id: string, requested: MachineSpec): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const driver = this.driverFor(requested.driver);
      const existing = await this.readStored(vm);
      const process = existing ? await this.supervisor.adopt(vm) : undefined;
      if (existing && process && JSON.stringify(existing.spec) !== JSON.stringify(this.withPrivateDrives(vm, requested))) {
        throw new NexusError('conflict', `VM ${id} is running with another spec`, { suggestion: 'Stop it before changing its spec.' });
      }
      const undo = new UndoStack(this.log);
      try {
        if (!existing) {
          await mkdir(vm.dir, { recursive: true, mode: 0o750 });
          undo.push(`remove ${vm.dir}`, () => rm(vm.dir, { recursive: true, force: true }));
        }
        await this.checkPaths(vm, requested);
        const spec = await this.prepareDrives(vm, requested, undo);
        for (const nic of spec.nics) {
          const tap = nic.tap ?? tapNameOf(id);
          if (tap !== tapNameOf(id)) {
            throw new NexusError('bad_request', `TAP ${tap} is not named from VM ${id}`, { suggestion: `Leave nics[].tap out, or use ${tapNameOf(id)}.` });
          }
          if (!process) {
            await this.network.ensureTap(tap);
            undo.push(`delete TAP ${tap}`, () => this.network.deleteTap(tap));
          }
        }
        await writeAtomically(vm.specFile, JSON.stringify({ spec, driver: driver.name } satisfies StoredSpec, null, 2));
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
      const tap = stored.spec.nics[0]?.tap ?? tapNameOf(id);
      if (await this.supervisor.adopt(vm)) return { tap };
      await this.network.ensureTap(tap);
      return { tap };
    });
  }

  /**
   * The PRD's fine-grained step: starts the VMM process with the guest not yet running (QEMU
   * `-S`, Firecracker before InstanceStart); `resume` boots it. Idempotent.
   */
  spawn(id: string): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      if (!(await this.supervisor.adopt(vm))) {
        for (const nic of stored.spec.nics) await this.network.ensureTap(nic.tap ?? tapNameOf(id));
        await rm(vm.consoleLog, { force: true });
        await this.driverFor(stored.driver).start(vm, stored.spec, { paused: true });
      }
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
      if (await this.supervisor.adopt(vm)) await driver.updateDriveRateLimit(vm, driveId, limit);
      const spec = { ...stored.spec, drives: stored.spec.drives.map((drive) => (drive.id === driveId ? { ...drive, rate_limit: limit } : drive)) };
      await writeAtomically(vm.specFile, JSON.stringify({ spec, driver: stored.driver } satisfies StoredSpec, null, 2));
      return this.describe(vm);
    });
  }

  act(id: string, action: 'start' | 'pause' | 'resume' | 'stop', timeoutMs = 10_000): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      const driver = this.driverFor(stored.driver);
      const process = await this.supervisor.adopt(vm);
      switch (action) {
        case 'start':
          if (!process) {
            for (const nic of stored.spec.nics) await this.network.ensureTap(nic.tap ?? tapNameOf(id));
            await rm(vm.consoleLog, { force: true });
            await driver.start(vm, stored.spec);
            this.log.info({ vm_id: id, driver: driver.name }, 'VM started');
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
      const snapshotId = `s-${Date.now().toString(36)}`;
      const dir = join(vm.snapshotsDir, snapshotId);
      const undo = new UndoStack(this.log);
      undo.push(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
      try {
        const files = await driver.snapshot(vm, dir);
        const drives: SnapshotInfo['drives'] = [];
        for (const drive of stored.spec.drives.filter((d) => !d.read_only)) {
          const copy = join(dir, `drive-${drive.id}.img`);
          await copySparse(drive.path, copy);
          drives.push({ id: drive.id, path: copy, size_bytes: (await stat(copy)).size });
        }
        const snapshot: SnapshotInfo = { snapshot_id: snapshotId, state_file: files.stateFile, size_bytes: files.sizeBytes, drives };
        if (files.memoryFile) snapshot.memory_file = files.memoryFile;
        await writeAtomically(join(dir, 'snapshot.json'), JSON.stringify(snapshot, null, 2));
        return { vm: await this.describe(vm), snapshot };
      } catch (error) {
        await undo.unwind();
        throw error;
      }
    });
  }

  /** Replaces a stopped VM's guest with a snapshot of it, in a fresh VMM process, and resumes it. */
  restore(id: string, snapshotId: string): Promise<AgentVm> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.requireStored(vm);
      const driver = this.driverFor(stored.driver);
      if (await this.supervisor.adopt(vm)) {
        throw new NexusError('conflict', `VM ${id} is running`, { suggestion: 'Stop it before restoring a snapshot into it.' });
      }
      const snapshot = await readJson<SnapshotInfo>(join(vm.snapshotsDir, snapshotId, 'snapshot.json'));
      if (!snapshot) throw new NexusError('not_found', `VM ${id} has no snapshot ${snapshotId}`);
      // Disks are not in the VMM stream: put back the copies taken with it.
      for (const saved of snapshot.drives) {
        const drive = stored.spec.drives.find((d) => d.id === saved.id);
        if (drive) await copySparse(saved.path, drive.path, { overwrite: true });
      }
      for (const nic of stored.spec.nics) await this.network.ensureTap(nic.tap ?? tapNameOf(id));
      await driver.restore(vm, stored.spec, { stateFile: snapshot.state_file, memoryFile: snapshot.memory_file, sizeBytes: snapshot.size_bytes });
      await driver.resume(vm);
      this.log.info({ vm_id: id, snapshot_id: snapshotId }, 'VM restored');
      return this.describe(vm);
    });
  }

  /** Stops the VM, deletes its TAP and its folder. Deleting a VM that is not here succeeds. */
  delete(id: string, timeoutMs = 10_000): Promise<void> {
    return this.locks.run(id, async () => {
      const vm = this.layout(id);
      const stored = await this.readStored(vm);
      const process = await this.supervisor.adopt(vm);
      if (process) await this.driverFor(stored?.driver).stop(vm, process, timeoutMs);
      await this.supervisor.forget(vm);
      await this.network.deleteTap(tapNameOf(id));
      await rm(vm.dir, { recursive: true, force: true });
      this.log.info({ vm_id: id }, 'VM deleted');
    });
  }

  get(id: string): Promise<AgentVm> {
    return this.locks.run(id, async () => this.describe(this.layout(id)));
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
      const vm = VM_ID_PATTERN.test(name) ? await this.get(name).catch(() => undefined) : undefined;
      if (!vm) {
        orphans.dirs.push(join(root, name));
        continue;
      }
      vms.push(vm);
      if (vm.pid === null && (await exists(vm.api_socket))) orphans.sockets.push(vm.api_socket);
    }
    const known = new Set(vms.map((vm) => vm.id));
    const ownTaps = new Set(names.filter((name) => VM_ID_PATTERN.test(name)).map(tapNameOf));
    orphans.taps = (await this.network.listTaps()).filter((tap) => !ownTaps.has(tap));
    for (const process of await scanVmmProcesses(this.config.runDir)) {
      const owner = vms.find((vm) => vm.id === process.vmId);
      if (!known.has(process.vmId) || owner?.pid !== process.pid) {
        orphans.processes.push({ pid: process.pid, vm_id: process.vmId, command: process.command });
      }
    }
    return { vms, orphans };
  }

  private async describe(vm: VmLayout): Promise<AgentVm> {
    const stored = await this.requireStored(vm);
    const driver = this.driverFor(stored.driver);
    const process: ProcessIdentity | undefined = await this.supervisor.adopt(vm);
    const vmmState = await driver.inspect(vm, process);
    const state: AgentVmState = vmmState === 'stopped' && !(await exists(vm.consoleLog)) ? 'configured' : vmmState;
    return {
      id: vm.id,
      driver: driver.name,
      state,
      pid: process?.pid ?? null,
      tap: stored.spec.nics.length > 0 ? (stored.spec.nics[0]?.tap ?? tapNameOf(vm.id)) : null,
      api_socket: driver.name === 'qemu' ? vm.qmpSocket : vm.firecrackerSocket,
      console_log: vm.consoleLog,
      vmm_log: vm.vmmLog,
      spec: stored.spec,
    };
  }

  /**
   * A writable drive taken from the image store gets a private sparse copy in the VM's folder:
   * images are shared and never written by a guest.
   */
  private withPrivateDrives(vm: VmLayout, spec: MachineSpec): MachineSpec {
    const images = imagesDir(this.config.runDir);
    return {
      ...spec,
      drives: spec.drives.map((drive) =>
        !drive.read_only && drive.path.startsWith(`${images}/`) ? { ...drive, path: join(vm.dir, 'drives', `${drive.id}.img`) } : drive,
      ),
    };
  }

  /** Makes the private copies {@link withPrivateDrives} points at, once. */
  private async prepareDrives(vm: VmLayout, requested: MachineSpec, undo: UndoStack): Promise<MachineSpec> {
    const spec = this.withPrivateDrives(vm, requested);
    for (const [index, drive] of spec.drives.entries()) {
      const source = requested.drives[index]?.path;
      if (source === undefined || source === drive.path || (await exists(drive.path))) continue;
      await mkdir(join(vm.dir, 'drives'), { recursive: true });
      await copySparse(source, drive.path);
      undo.push(`remove ${drive.path}`, () => rm(drive.path, { force: true }));
    }
    return spec;
  }

  /** Kernel, initrd and drives must resolve (symlinks followed) under the image store or the VM's folder. */
  private async checkPaths(vm: VmLayout, spec: MachineSpec): Promise<void> {
    // The roots are canonicalized too: a run dir reached through a symlink is still the run dir.
    const roots = await Promise.all([imagesDir(this.config.runDir), vm.dir].map((root) => realpath(root).catch(() => root)));
    const paths: Array<[string, string]> = [['kernel', spec.kernel.path], ...spec.drives.map((d): [string, string] => [`drive ${d.id}`, d.path])];
    if (spec.initrd) paths.push(['initrd', spec.initrd.path]);
    for (const [what, path] of paths) {
      // A path that does not resolve is judged by its nearest existing ancestor, so "missing" is
      // never answered for a path outside the roots: callers cannot probe the host's files.
      const canonical = await realpath(path).catch(() => undefined);
      if (!isUnderAllowedRoot(canonical ?? (await canonicalAncestor(path)), roots)) {
        throw new NexusError('forbidden', `the ${what} ${path} is outside the allowed roots`, {
          suggestion: `Put it under ${roots[0]} (or the VM's own folder).`,
        });
      }
      if (canonical === undefined) {
        throw new NexusError('bad_request', `the ${what} ${path} does not exist`, { suggestion: 'Build or upload the image first (`nexus image build`).' });
      }
      const info = await stat(canonical);
      if (!info.isFile() && !info.isBlockDevice()) {
        throw new NexusError('bad_request', `the ${what} ${path} is not a file`, { suggestion: 'Give the path of an image file, not a folder.' });
      }
    }
  }

  private driverFor(name: VmmName | undefined): VmmDriver {
    const driver = this.config.drivers.get(name ?? this.config.defaultDriver);
    if (!driver) {
      throw new NexusError('conflict', `the ${name} driver is not available on this host`, {
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

  private async requireStored(vm: VmLayout): Promise<StoredSpec> {
    const stored = await this.readStored(vm);
    if (!stored) throw new NexusError('not_found', `no VM ${vm.id} on this host`, { suggestion: 'PUT /agent/v1/vms/:id with a MachineSpec first.' });
    return stored;
  }
}

/** The canonical form of a path that may not exist: its nearest existing ancestor, resolved, plus the rest. */
async function canonicalAncestor(path: string): Promise<string> {
  const missing: string[] = [];
  let current = resolve(path);
  for (;;) {
    const canonical = await realpath(current).catch(() => undefined);
    if (canonical !== undefined) return join(canonical, ...missing.reverse());
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

async function writeAtomically(path: string, text: string): Promise<void> {
  const staged = `${path}.tmp`;
  await writeFile(staged, text, { mode: 0o640 });
  await rename(staged, path);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
