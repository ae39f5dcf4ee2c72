import type { VmMetricsRecord } from '../../../contracts/observe-api.js';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineSpec, RateLimit } from '../../../contracts/machine-spec.js';
import { NexusError, messageOf } from '../../../kit/nexus-error.js';
import type { ProcessIdentity } from '../../../kit/process-identity.js';
import type { VmLayout } from '../../../contracts/vm-layout.js';
import type { ProcessSupervisor } from '../../ports/process-supervisor.js';
import { SNAPSHOT_STATE_FILE, type SnapshotFiles, type VmmCapabilities, type VmmDriver, type VmmFiles, type VmmRunState } from '../../ports/vmm-driver.js';
import { type QemuLaunchOptions, qemuArgs, shellQuote } from './qemu-command.js';
import { lastLines } from '../../../kit/log-tail.js';
import { QmpClient, withQmp } from './qmp-client.js';
import { tapPlacementOf } from '../../../contracts/host-names.js';

/** A QEMU VM's files: its QMP socket, and its standard error, which is its log. */
export function qemuFilesOf(vm: VmLayout): VmmFiles {
  return { controlSocket: vm.qmpSocket, processLog: vm.vmmLog, vmmLog: vm.vmmLog };
}

export interface QemuDriverConfig {
  binary: string;
  accel: QemuLaunchOptions['accel'];
  tscKhz: number | undefined;
  /** How long the QMP socket may take to answer after spawn. Default 10 s. */
  readyTimeoutMs?: number;
}

/** A save of a 128 MiB guest takes a fraction of a second; this only catches a wedged migration. */
const SNAPSHOT_TIMEOUT_MS = 120_000;

const RUN_STATES: Record<string, VmmRunState> = {
  running: 'running',
  paused: 'paused',
  prelaunch: 'paused',
  postmigrate: 'paused',
  'finish-migrate': 'paused',
  'save-vm': 'paused',
  'restore-vm': 'starting',
  inmigrate: 'starting',
  suspended: 'paused',
  shutdown: 'stopped',
  'guest-panicked': 'failed',
  'internal-error': 'failed',
  'io-error': 'failed',
};

/** QEMU's `microvm` machine, controlled over QMP. KVM where it runs guests, TCG elsewhere. */
export class QemuDriver implements VmmDriver {
  readonly name = 'qemu' as const;
  readonly capabilities: VmmCapabilities = { pause: true, snapshot: true, gracefulStop: true, driveRateLimits: true, restoreAsNewVm: true };

  constructor(
    private readonly config: QemuDriverConfig,
    private readonly supervisor: ProcessSupervisor,
  ) {}

  async start(vm: VmLayout, spec: MachineSpec, options: { paused?: boolean } = {}): Promise<ProcessIdentity> {
    return this.launch(vm, spec, { paused: options.paused ?? false });
  }

  async inspect(vm: VmLayout, process: ProcessIdentity | undefined): Promise<VmmRunState> {
    if (!process || !(await this.supervisor.isAlive(process))) return 'stopped';
    try {
      const status = await withQmp(vm.qmpSocket, (qmp) => qmp.execute<{ status: string }>('query-status'));
      return RUN_STATES[status.status] ?? 'failed';
    } catch (error) {
      // Alive but not answering: QEMU is still starting, or wedged; the caller retries.
      if (await this.supervisor.isAlive(process)) return 'starting';
      throw error;
    }
  }

  async pause(vm: VmLayout): Promise<void> {
    await withQmp(vm.qmpSocket, (qmp) => qmp.execute('stop'));
  }

  /** Block I/O totals from QMP's query-blockstats, summed over the VM's disks; the run status with them. */
  async sampleMetrics(vm: VmLayout): Promise<{ block: VmMetricsRecord['block']; raw: unknown }> {
    const { stats, status } = await withQmp(vm.qmpSocket, async (qmp) => ({
      stats: await qmp.execute<Array<{ device?: string; qdev?: string; stats: Record<string, number> }>>('query-blockstats'),
      status: await qmp.execute<{ status: string; running: boolean }>('query-status'),
    }));
    const block = { read_bytes: 0, write_bytes: 0, read_ops: 0, write_ops: 0 };
    for (const { stats: disk } of stats) {
      block.read_bytes += disk.rd_bytes ?? 0;
      block.write_bytes += disk.wr_bytes ?? 0;
      block.read_ops += disk.rd_operations ?? 0;
      block.write_ops += disk.wr_operations ?? 0;
    }
    return { block, raw: { status: status.status, blockstats: stats.map((entry) => ({ device: entry.device || entry.qdev, stats: entry.stats })) } };
  }

  async resume(vm: VmLayout): Promise<void> {
    await withQmp(vm.qmpSocket, (qmp) => qmp.execute('cont'));
  }

  /**
   * ACPI power button first (only a running guest can act on it), then `quit`, then SIGTERM,
   * then SIGKILL: each step only if the one before did not end the process in time.
   */
  async stop(vm: VmLayout, process: ProcessIdentity, timeoutMs: number): Promise<void> {
    if (!(await this.supervisor.isAlive(process))) return;
    const running = await this.inspect(vm, process).then(
      (state) => state === 'running',
      () => false,
    );
    if (running && timeoutMs > 0) {
      const poweredOff = await withQmp(vm.qmpSocket, (qmp) => qmp.execute('system_powerdown')).then(
        () => this.supervisor.waitForExit(process, timeoutMs),
        () => false,
      );
      if (poweredOff) return;
    }
    const quit = await withQmp(vm.qmpSocket, (qmp) => qmp.execute('quit')).then(
      () => this.supervisor.waitForExit(process, 2000),
      () => false,
    );
    if (quit) return;
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await this.supervisor.signal(process, signal);
      if (await this.supervisor.waitForExit(process, signal === 'SIGTERM' ? 2000 : 5000)) return;
    }
    throw new NexusError('vmm_failed', `QEMU (pid ${process.pid}) survived SIGKILL`);
  }

  async snapshot(vm: VmLayout, dir: string): Promise<SnapshotFiles> {
    await mkdir(dir, { recursive: true });
    const stateFile = join(dir, SNAPSHOT_STATE_FILE);
    await withQmp(vm.qmpSocket, async (qmp) => {
      const { status } = await qmp.execute<{ status: string }>('query-status');
      if (RUN_STATES[status] !== 'paused') {
        throw new NexusError('conflict', `a snapshot needs a paused VM; this one is ${status}`, { suggestion: 'Pause it first.' });
      }
      // QEMU throttles migration to 128 MiB/s by default; a local file needs no throttle.
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 16 * 1024 * 1024 * 1024 });
      await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(stateFile)}` });
      const deadline = Date.now() + SNAPSHOT_TIMEOUT_MS;
      for (;;) {
        const progress = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
        if (progress.status === 'completed') break;
        if (progress.status === 'failed' || progress.status === 'cancelled') {
          throw new NexusError('vmm_failed', `QEMU could not save the VM: ${progress['error-desc'] ?? progress.status}`);
        }
        if (Date.now() > deadline) {
          await qmp.execute('migrate_cancel').catch(() => undefined);
          throw new NexusError('vmm_failed', `saving the VM took longer than ${SNAPSHOT_TIMEOUT_MS / 1000} s; cancelled`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    return { stateFile, sizeBytes: (await stat(stateFile)).size };
  }

  async restore(vm: VmLayout, spec: MachineSpec, snapshot: SnapshotFiles): Promise<ProcessIdentity> {
    const process = await this.launch(vm, spec, { incomingFile: snapshot.stateFile });
    // The stream loads after the monitor answers; wait until QEMU has left `inmigrate`.
    const deadline = Date.now() + (this.config.readyTimeoutMs ?? 10_000) * 3;
    for (;;) {
      const state = await this.inspect(vm, process);
      if (state === 'paused' || state === 'running') return process;
      if (state === 'stopped' || state === 'failed' || Date.now() > deadline) {
        const why = await lastLines(vm.vmmLog);
        await this.kill(vm, process);
        throw new NexusError('vmm_failed', `restoring from ${snapshot.stateFile} failed (${state}): ${why}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async updateDriveRateLimit(vm: VmLayout, driveId: string, limit: RateLimit): Promise<void> {
    await withQmp(vm.qmpSocket, (qmp) =>
      qmp.execute('block_set_io_throttle', {
        id: driveId,
        bps: limit.bytes_per_second ?? 0,
        bps_rd: 0,
        bps_wr: 0,
        iops: limit.ops_per_second ?? 0,
        iops_rd: 0,
        iops_wr: 0,
      }),
    );
  }

  private async launch(vm: VmLayout, spec: MachineSpec, extra: Pick<QemuLaunchOptions, 'incomingFile' | 'paused'>): Promise<ProcessIdentity> {
    await mkdir(vm.sockDir, { recursive: true });
    await mkdir(vm.logsDir, { recursive: true });
    await rm(vm.qmpSocket, { force: true });
    const args = qemuArgs(vm, spec, { accel: this.config.accel, tscKhz: this.config.tscKhz, ...extra });
    const { netns } = tapPlacementOf(vm.id, spec.nics[0]?.network !== undefined);
    const process = await this.supervisor.launch({ vm, binary: this.config.binary, args, ...(netns ? { netns } : {}) });
    try {
      await this.waitForMonitor(vm, process);
      return process;
    } catch (error) {
      await this.kill(vm, process);
      throw error;
    }
  }

  /** Ends a VMM we could not bring up; its pid file goes only once it is really gone. */
  private async kill(vm: VmLayout, process: ProcessIdentity): Promise<void> {
    await this.supervisor.signal(process, 'SIGKILL');
    if (await this.supervisor.waitForExit(process, 5000)) await this.supervisor.forget(vm);
  }

  /** Until QMP answers; if QEMU exits first, its own last words are the error. */
  private async waitForMonitor(vm: VmLayout, process: ProcessIdentity): Promise<void> {
    const deadline = Date.now() + (this.config.readyTimeoutMs ?? 10_000);
    for (;;) {
      if (!(await this.supervisor.isAlive(process))) {
        throw new NexusError('vmm_failed', `QEMU exited while starting: ${await lastLines(vm.vmmLog)}`, {
          suggestion: `Check the kernel, initrd and drive paths; the full log is ${vm.vmmLog}.`,
        });
      }
      try {
        (await QmpClient.connect(vm.qmpSocket, 1000)).close();
        return;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new NexusError('vmm_failed', `QEMU's monitor did not answer within ${this.config.readyTimeoutMs ?? 10_000} ms: ${messageOf(error)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
  }
}
