import type { VmMetricsRecord } from '../../../contracts/observe-api.js';
import { splitLines } from '../../../kit/log-file.js';
import { lstat, mkdir, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { macOf, tapNameOf, tapPlacementOf } from '../../../contracts/host-names.js';
import type { MachineSpec, RateLimit } from '../../../contracts/machine-spec.js';
import type { VmLayout } from '../../../contracts/vm-layout.js';
import { pathExists, writeFileAtomically } from '../../../kit/atomic-file.js';
import { lastLines } from '../../../kit/log-tail.js';
import { NexusError, messageOf } from '../../../kit/nexus-error.js';
import type { ProcessIdentity } from '../../../kit/process-identity.js';
import type { ProcessSupervisor } from '../../ports/process-supervisor.js';
import {
  SNAPSHOT_MEMORY_FILE,
  SNAPSHOT_STATE_FILE,
  type SnapshotFiles,
  type VmmCapabilities,
  type VmmDriver,
  type VmmFiles,
  type VmmRunState,
} from '../../ports/vmm-driver.js';
import { FirecrackerApi } from './firecracker-api.js';
import {
  type FirecrackerApiVersion,
  type FirecrackerLogLevel,
  type FirecrackerPaths,
  configureRequests,
  driveIdOf,
  describeInstance,
  driveRateLimitUpdate,
  flushMetrics,
  instanceStart,
  observabilityRequests,
  pauseVm,
  resumeVm,
  sendCtrlAltDel,
  snapshotCreate,
  snapshotLoad,
} from './firecracker-requests.js';
import { JailUsers } from './jail-users.js';
import {
  JAIL_LAUNCH_PATTERN,
  type JailLayout,
  type JailUser,
  type JailerConfig,
  type JailedFile,
  jailLayout,
  jailerArgs,
  listJails,
  populateJail,
  removeJail,
} from './jailer.js';

/** A Firecracker VM's files: its API socket, its process output, and the logger file it writes. */
export function firecrackerFilesOf(vm: VmLayout): VmmFiles {
  return { controlSocket: vm.firecrackerSocket, processLog: vm.vmmLog, vmmLog: firecrackerLog(vm) };
}

export interface FirecrackerDriverConfig {
  /** The `firecracker` binary. */
  binary: string;
  /** The API version to speak: requests carry only what that version accepts. */
  apiVersion: FirecrackerApiVersion;
  /** Launch through the jailer; absent: Firecracker runs as the agent's user, unjailed. */
  jailer?: JailerConfig;
  /** The level of Firecracker's own log. Default Info. */
  logLevel?: FirecrackerLogLevel;
  /** How long the socket may take to answer `GET /` after spawn. Default 5 s. */
  readyTimeoutMs?: number;
  /** Per API call. Default 10 s (a snapshot of a large guest may need more). */
  requestTimeoutMs?: number;
}

/** `GET /` -> what the VmmDriver contract calls it. A configured, never-started VMM is `paused`, as QEMU's prelaunch is. */
const RUN_STATES: Record<string, VmmRunState> = { 'Not started': 'paused', Running: 'running', Paused: 'paused' };

/** The record of a jailed launch, in the VM's folder, so an agent restart finds the jail again. */
const JAIL_RECORD = 'jail.json';
const SNAPSHOT_TIMEOUT_MS = 120_000;

/**
 * Firecracker over its API socket: one process per boot (and per snapshot load), configured with
 * PUTs and started with `InstanceStart`. The guest console is the process's stdout, which goes to
 * the VM's console log; Firecracker's own log and metrics go to fresh files per process.
 */
export class FirecrackerDriver implements VmmDriver {
  readonly name = 'firecracker' as const;
  readonly capabilities: VmmCapabilities;
  private readonly api: FirecrackerApi;
  /** Per VM: how far its metrics file was read, and the block totals so far. */
  private readonly metricTotals = new Map<string, { offset: number; block: VmMetricsRecord['block']; raw: unknown }>();
  /** Jailed: each VM's own uid/gid. */
  private readonly users: JailUsers | undefined;

  constructor(
    private readonly config: FirecrackerDriverConfig,
    private readonly supervisor: ProcessSupervisor,
  ) {
    this.api = new FirecrackerApi(config.requestTimeoutMs ?? 10_000);
    this.users = config.jailer ? new JailUsers(config.jailer, config.binary) : undefined;
    this.capabilities = { pause: true, snapshot: true, gracefulStop: true, driveRateLimits: true, restoreAsNewVm: config.jailer !== undefined };
  }

  /** Jailed, the VM's own uid/gid (allocated on first use, kept until its folder is gone); unjailed, none: it runs as the agent. */
  async vmmUser(vm: VmLayout): Promise<JailUser | undefined> {
    return this.users?.of(vm);
  }

  /**
   * Jails of VMs that have no folder here (a crash mid-delete, a folder removed by hand): the
   * jailer never removes them, and each holds its uid until it is gone. One whose Firecracker still
   * runs waits for it to end (the process scan reports it), or its uid would be free while in use.
   */
  async leftoverDirs(hasVm: (vmId: string) => Promise<boolean>): Promise<string[]> {
    if (!this.config.jailer) return [];
    const left: string[] = [];
    for (const jail of await listJails(this.config.jailer, this.config.binary)) if (!jail.running && !(await hasVm(jail.vmId))) left.push(jail.dir);
    return left;
  }

  async start(vm: VmLayout, spec: MachineSpec, options: { paused?: boolean } = {}): Promise<ProcessIdentity> {
    const taps = tapsOf(vm, spec);
    const { process, paths, socket } = await this.launch(vm, spec);
    try {
      for (const request of configureRequests(this.config.apiVersion, spec, paths, taps, this.config.logLevel)) await this.api.call(socket, request);
      if (!options.paused) await this.api.call(socket, instanceStart);
      return process;
    } catch (error) {
      await this.kill(vm, process);
      throw await this.withLog(vm, error);
    }
  }

  async inspect(vm: VmLayout, process: ProcessIdentity | undefined): Promise<VmmRunState> {
    if (!process || !(await this.supervisor.isAlive(process))) return 'stopped';
    try {
      const info = await this.api.call<{ state: string }>(await this.socket(vm), describeInstance, 2000);
      return RUN_STATES[info.state] ?? 'failed';
    } catch (error) {
      // Alive but not answering: still starting, or busy with a long request; the caller retries.
      if (await this.supervisor.isAlive(process)) return 'starting';
      throw error;
    }
  }

  async pause(vm: VmLayout): Promise<void> {
    await this.api.call(await this.socket(vm), pauseVm);
  }

  /** A configured VMM that never ran boots; a paused one resumes. */
  async resume(vm: VmLayout): Promise<void> {
    const socket = await this.socket(vm);
    const info = await this.api.call<{ state: string }>(socket, describeInstance);
    await this.api.call(socket, info.state === 'Not started' ? instanceStart : resumeVm);
  }

  /**
   * Ctrl-Alt-Del first (a running guest resets, and Firecracker exits with it), then SIGKILL:
   * Firecracker has no SIGTERM handler, so a TERM would be no gentler. Resolves once it is gone.
   */
  async stop(vm: VmLayout, process: ProcessIdentity, timeoutMs: number): Promise<void> {
    if (await this.supervisor.isAlive(process)) {
      const running = (await this.inspect(vm, process).catch(() => 'failed')) === 'running';
      const socket = running && timeoutMs > 0 ? await this.socket(vm).catch(() => undefined) : undefined;
      if (socket) {
        await this.api.call(socket, sendCtrlAltDel, 2000).then(
          () => this.supervisor.waitForExit(process, timeoutMs),
          () => false,
        );
      }
      await this.supervisor.signal(process, 'SIGKILL');
      if (!(await this.supervisor.waitForExit(process, 5000))) {
        throw new NexusError('vmm_failed', `Firecracker (pid ${process.pid}) survived SIGKILL`);
      }
    }
    await this.cleanUp(vm);
  }

  async snapshot(vm: VmLayout, dir: string): Promise<SnapshotFiles> {
    const socket = await this.socket(vm);
    const info = await this.api.call<{ state: string }>(socket, describeInstance);
    if (info.state !== 'Paused') {
      throw new NexusError('conflict', `a snapshot needs a paused VM; this one is ${info.state}`, { suggestion: 'Pause it first.' });
    }
    await mkdir(dir, { recursive: true });
    const stateFile = join(dir, SNAPSHOT_STATE_FILE);
    const memoryFile = join(dir, SNAPSHOT_MEMORY_FILE);
    const jail = await this.readJail(vm);
    if (jail) {
      // The jailed process writes inside its jail (under names no restore links in); the
      // snapshot then moves to the VM's folder, on the same filesystem (see populateJail).
      await this.api.call(socket, snapshotCreate('/created.state', '/created.mem'), SNAPSHOT_TIMEOUT_MS);
      await rename(join(jail.root, 'created.state'), stateFile);
      await rename(join(jail.root, 'created.mem'), memoryFile);
    } else {
      await this.api.call(socket, snapshotCreate(stateFile, memoryFile), SNAPSHOT_TIMEOUT_MS);
    }
    const sizes = await Promise.all([stat(stateFile), stat(memoryFile)]);
    return { stateFile, memoryFile, sizeBytes: sizes.reduce((sum, file) => sum + file.blocks * 512, 0) };
  }

  /** A fresh process, logger and metrics, then `/snapshot/load` (nothing else may come before it). */
  async restore(vm: VmLayout, spec: MachineSpec, snapshot: SnapshotFiles): Promise<ProcessIdentity> {
    if (!snapshot.memoryFile) throw new NexusError('conflict', `snapshot ${snapshot.stateFile} has no memory file: it was not made by Firecracker`);
    const extra: JailedFile[] = [
      { hostPath: snapshot.stateFile, jailPath: '/snapshot.state', writable: false },
      { hostPath: snapshot.memoryFile, jailPath: '/snapshot.mem', writable: false },
    ];
    const { process, paths, socket, jailed } = await this.launch(vm, spec, extra);
    try {
      for (const request of observabilityRequests(this.config.apiVersion, paths, this.config.logLevel)) await this.api.call(socket, request);
      const [state, memory] = jailed ? ['/snapshot.state', '/snapshot.mem'] : [snapshot.stateFile, snapshot.memoryFile];
      await this.api.call(socket, snapshotLoad(state, memory, tapsOf(vm, spec)), SNAPSHOT_TIMEOUT_MS);
      const jail = jailed ? await this.readJail(vm) : undefined;
      if (jail) {
        // Loaded (the memory stays mapped): drop the jail's links, so nothing in the jail can write the saved files.
        await rm(join(jail.root, 'snapshot.state'), { force: true });
        await rm(join(jail.root, 'snapshot.mem'), { force: true });
      }
      return process;
    } catch (error) {
      await this.kill(vm, process);
      throw await this.withLog(vm, error);
    }
  }

  async updateDriveRateLimit(vm: VmLayout, driveId: string, limit: RateLimit): Promise<void> {
    await this.api.call(await this.socket(vm), driveRateLimitUpdate(driveId, limit));
  }

  async release(vm: VmLayout): Promise<void> {
    this.metricTotals.delete(vm.id);
    await this.cleanUp(vm);
  }

  /**
   * Block I/O totals: Firecracker's metrics lines hold what changed since the line before, so
   * each sample flushes a fresh line and adds the new lines to the totals of this process.
   */
  async sampleMetrics(vm: VmLayout): Promise<{ block: VmMetricsRecord['block']; raw: unknown }> {
    await this.api.call(await this.socket(vm), flushMetrics);
    const file = join(vm.dir, 'metrics.json');
    const size = (await stat(file)).size;
    let totals = this.metricTotals.get(vm.id);
    // A new process starts a new file (and the log keeper may cut one): count from its start.
    if (!totals || size < totals.offset) totals = { offset: 0, block: { read_bytes: 0, write_bytes: 0, read_ops: 0, write_ops: 0 }, raw: null };
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(size - totals.offset);
      await handle.read(buffer, 0, buffer.length, totals.offset);
      for (const line of splitLines(buffer, totals.offset, false)) {
        totals.offset = line.end;
        let record: { block?: Record<string, number> };
        try {
          record = JSON.parse(line.text);
        } catch {
          continue;
        }
        totals.block.read_bytes += record.block?.read_bytes ?? 0;
        totals.block.write_bytes += record.block?.write_bytes ?? 0;
        totals.block.read_ops += record.block?.read_count ?? 0;
        totals.block.write_ops += record.block?.write_count ?? 0;
        totals.raw = record;
      }
    } finally {
      await handle.close();
    }
    this.metricTotals.set(vm.id, totals);
    return { block: { ...totals.block }, raw: totals.raw };
  }

  /** The API socket of the VM's current process (when jailed, a link to the socket in its jail). */
  async apiSocket(vm: VmLayout): Promise<string> {
    return vm.firecrackerSocket;
  }

  /**
   * The socket to call the VM's Firecracker on. A jailed Firecracker owns the folder its socket is
   * in: what is there must be a socket, not a link it put in its place towards another host socket.
   */
  private async socket(vm: VmLayout): Promise<string> {
    const jail = await this.readJail(vm);
    if (jail) {
      const found = await lstat(jail.socket).catch(() => undefined);
      if (found && !found.isSocket()) throw new NexusError('vmm_failed', `${jail.socket} is not a socket: refusing to talk to whatever it leads to`);
    }
    return vm.firecrackerSocket;
  }

  /**
   * Rejects a drive id set Firecracker cannot tell apart (`-` becomes `_` in its device ids), when
   * the VM is ensured rather than at start.
   */
  validate(spec: MachineSpec): void {
    const ids = spec.drives.map((drive) => driveIdOf(drive.id));
    const clash = ids.find((id, index) => ids.indexOf(id) !== index);
    if (clash) {
      throw new NexusError('validation_failed', `drive ids ${spec.drives.map((drive) => drive.id).join(', ')} name the same Firecracker device ${clash}`, {
        suggestion: "Firecracker's device ids allow no '-': make the ids differ in more than '-' and '_'.",
      });
    }
  }

  /** Spawns the process (jailed or not) and waits until its API answers. */
  private async launch(
    vm: VmLayout,
    spec: MachineSpec,
    extraFiles: readonly JailedFile[] = [],
  ): Promise<{ process: ProcessIdentity; paths: FirecrackerPaths; socket: string; jailed: boolean }> {
    await this.cleanUp(vm);
    await mkdir(vm.sockDir, { recursive: true });
    await mkdir(vm.logsDir, { recursive: true });
    const logFile = firecrackerLog(vm);
    const metricsFile = join(vm.dir, 'metrics.json');
    // Firecracker writes these from offset 0 without truncating: each process gets fresh ones.
    await rotate(logFile);
    await rm(metricsFile, { force: true });
    await writeFile(logFile, '', { mode: 0o640 });
    await writeFile(metricsFile, '', { mode: 0o640 });

    const jailerConfig = this.config.jailer;
    const { netns } = tapPlacementOf(vm.id, spec.nics[0]?.network !== undefined);
    let process: ProcessIdentity;
    let paths: FirecrackerPaths;
    let socket: string;
    if (jailerConfig && this.users) {
      const user = await this.users.of(vm);
      const jail = jailLayout(jailerConfig, this.config.binary, vm.id, Date.now().toString(36));
      const files: JailedFile[] = [
        { hostPath: spec.kernel.path, jailPath: '/vm/kernel', writable: false },
        ...(spec.initrd ? [{ hostPath: spec.initrd.path, jailPath: '/vm/initrd', writable: false }] : []),
        ...spec.drives.map((drive) => ({ hostPath: drive.path, jailPath: `/vm/drive-${drive.id}`, writable: !drive.read_only })),
        // Linked in, so what Firecracker logs outlives the jail.
        { hostPath: logFile, jailPath: '/firecracker.log', writable: true },
        { hostPath: metricsFile, jailPath: '/metrics.json', writable: true },
        ...extraFiles,
      ];
      // Recorded first: a jail half made by a failed populate is still found and removed.
      await writeFileAtomically(join(vm.dir, JAIL_RECORD), JSON.stringify(jail), 0o640);
      await populateJail(user, jail, files);
      // The jail socket's host path can pass the 107-byte unix socket limit: the agent reaches it
      // through a short link in the VM's own socket folder.
      await symlink(jail.socket, vm.firecrackerSocket);
      paths = {
        kernel: '/vm/kernel',
        ...(spec.initrd ? { initrd: '/vm/initrd' } : {}),
        drives: new Map(spec.drives.map((drive) => [drive.id, `/vm/drive-${drive.id}`])),
        logFile: '/firecracker.log',
        metricsFile: '/metrics.json',
      };
      socket = vm.firecrackerSocket;
      process = await this.supervisor.launch({
        vm,
        binary: jailerConfig.binary,
        args: jailerArgs(jailerConfig, this.config.binary, jail, user, netns),
        stdoutPath: vm.consoleLog,
      });
    } else {
      paths = {
        kernel: spec.kernel.path,
        ...(spec.initrd ? { initrd: spec.initrd.path } : {}),
        drives: new Map(spec.drives.map((drive) => [drive.id, drive.path])),
        logFile,
        metricsFile,
      };
      socket = vm.firecrackerSocket;
      process = await this.supervisor.launch({
        vm,
        binary: this.config.binary,
        args: ['--api-sock', socket, '--id', vm.id],
        stdoutPath: vm.consoleLog,
        ...(netns ? { netns } : {}),
      });
    }
    try {
      await this.waitForApi(vm, process, socket);
    } catch (error) {
      await this.kill(vm, process);
      throw error;
    }
    return { process, paths, socket, jailed: jailerConfig !== undefined };
  }

  /** Until `GET /` answers (the socket file appears before Firecracker listens on it). */
  private async waitForApi(vm: VmLayout, process: ProcessIdentity, socket: string): Promise<void> {
    const timeoutMs = this.config.readyTimeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!(await this.supervisor.isAlive(process))) {
        throw new NexusError('vmm_failed', `Firecracker exited while starting: ${await lastLines(vm.vmmLog)}`, {
          suggestion: `The full log is ${vm.vmmLog}; check the binary, /dev/kvm and the socket path (${socket}).`,
        });
      }
      try {
        if (await pathExists(socket)) {
          await this.api.call(socket, describeInstance, 1000);
          return;
        }
      } catch (error) {
        if (Date.now() > deadline) throw new NexusError('vmm_failed', `Firecracker's API did not answer within ${timeoutMs} ms: ${messageOf(error)}`);
      }
      if (Date.now() > deadline) throw new NexusError('vmm_failed', `Firecracker made no API socket at ${socket} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Ends a process we could not bring up, and everything it left. */
  private async kill(vm: VmLayout, process: ProcessIdentity): Promise<void> {
    await this.supervisor.signal(process, 'SIGKILL');
    if (await this.supervisor.waitForExit(process, 5000)) {
      await this.supervisor.forget(vm);
      await this.cleanUp(vm);
    }
  }

  /** What a finished process leaves: Firecracker never unlinks its socket, and the jailer never removes its jail. */
  private async cleanUp(vm: VmLayout): Promise<void> {
    await rm(vm.firecrackerSocket, { force: true });
    const jail = await this.readJail(vm);
    if (jail) {
      await removeJail(jail);
      await rm(join(vm.dir, JAIL_RECORD), { force: true });
    }
  }

  /**
   * The VM's current jail from its record, checked against where this driver makes jails: the VM
   * folder is not trusted input, and the jail dir is removed with `rm -r`.
   */
  private async readJail(vm: VmLayout): Promise<JailLayout | undefined> {
    let recorded: JailLayout;
    try {
      recorded = JSON.parse(await readFile(join(vm.dir, JAIL_RECORD), 'utf8')) as JailLayout;
    } catch {
      return undefined;
    }
    const jailer = this.config.jailer;
    const launch = typeof recorded.id === 'string' && recorded.id.startsWith(`${vm.id}-`) ? recorded.id.slice(vm.id.length + 1) : '';
    if (!jailer || !JAIL_LAUNCH_PATTERN.test(launch)) return undefined;
    return jailLayout(jailer, this.config.binary, vm.id, launch);
  }

  /** Firecracker's refusal plus the last lines of its log, which usually say why. */
  private async withLog(vm: VmLayout, error: unknown): Promise<unknown> {
    if (!(error instanceof NexusError) || error.code !== 'vmm_failed') return error;
    const log = await lastLines(firecrackerLog(vm), 3);
    return log === '(no log)' || log === '(no output)'
      ? error
      : new NexusError('vmm_failed', `${error.faultMessage} (log: ${log})`, { cause: error, suggestion: error.suggestion });
  }
}

/** Firecracker's own log (PUT /logger), one file per process. */
function firecrackerLog(vm: VmLayout): string {
  return join(vm.logsDir, 'firecracker.log');
}

/** Keeps the previous process's log as `.1`, so the new one starts from an empty file. */
async function rotate(path: string): Promise<void> {
  await rename(path, `${path}.1`).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}

/** The VM's TAPs and MACs, by NIC: a NIC on a network has `tap0` in the VM's namespace (where Firecracker is started). */
function tapsOf(vm: VmLayout, spec: MachineSpec): Array<{ tap: string; mac: string }> {
  return spec.nics.map((nic) => ({ tap: nic.network ? tapPlacementOf(vm.id, true).tap : (nic.tap ?? tapNameOf(vm.id)), mac: nic.mac ?? macOf(vm.id) }));
}
