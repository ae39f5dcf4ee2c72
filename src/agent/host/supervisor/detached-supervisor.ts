import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, open, rm } from 'node:fs/promises';
import { writeFileAtomically } from '../../../kit/atomic-file.js';
import { lastLines } from '../../../kit/log-tail.js';
import { NexusError } from '../../../kit/nexus-error.js';
import { type ProcessIdentity, isProcessAlive, readProcessStartTicks } from '../../../kit/process-identity.js';
import type { VmLayout } from '../../../contracts/vm-layout.js';
import type { LaunchRequest, ProcessSupervisor } from '../../ports/process-supervisor.js';
import { readPidFile } from './pid-file.js';
import { type ProcessPlacement, enterCgroup, leaveCgroup, scopedCommand } from './process-placement.js';
import type { Logger } from 'pino';

/**
 * Each VMM runs detached in a session of its own, so neither an agent restart nor a signal to the
 * agent's process group reaches it, and in a systemd scope or cgroup of its own where the host
 * offers one (see {@link ProcessPlacement}). The agent finds it again through the pid file.
 */
export class DetachedSupervisor implements ProcessSupervisor {
  constructor(
    private readonly placement: ProcessPlacement,
    private readonly log: Logger,
  ) {}

  async launch({ vm, binary: vmmBinary, args: vmmArgs, stdoutPath, netns }: LaunchRequest): Promise<ProcessIdentity> {
    // nsenter joins the namespace and execs the VMM: the pid stays the VMM's.
    const entered = netns ? { binary: 'nsenter', args: [`--net=${netns}`, '--', vmmBinary, ...vmmArgs] } : { binary: vmmBinary, args: vmmArgs };
    const { binary, args } = scopedCommand(this.placement, vm.id, entered.binary, entered.args);
    await mkdir(vm.logsDir, { recursive: true });
    const log = await open(vm.vmmLog, 'a', 0o640);
    const stdout = stdoutPath
      ? await open(stdoutPath, 'a', 0o640).catch(async (error: unknown) => {
          await log.close();
          throw error;
        })
      : log;
    try {
      const child = spawn(binary, args, { detached: true, stdio: ['ignore', stdout.fd, log.fd] });
      const [outcome] = (await Promise.race([once(child, 'spawn').then(() => ['spawned']), once(child, 'error')])) as [string | Error];
      if (outcome instanceof Error) {
        throw new NexusError('unavailable', `cannot run ${binary}: ${outcome.message}`, { cause: outcome });
      }
      child.unref();
      const pid = child.pid ?? 0;
      const startTicks = await readProcessStartTicks(pid);
      if (startTicks === undefined) {
        throw new NexusError('vmm_failed', `${vmmBinary} exited at once: ${await lastLines(vm.vmmLog)}`, { suggestion: `Read ${vm.vmmLog}.` });
      }
      const identity = { pid, startTicks };
      try {
        await enterCgroup(this.placement, vm.id, pid).catch((error: unknown) =>
          this.log.warn({ err: error, vm_id: vm.id }, "could not move the VMM into a cgroup of its own; it runs in the agent's"),
        );
        await writePidFile(vm, identity);
      } catch (error) {
        // Unrecorded, it could never be found again: end it rather than leave it running.
        await this.signal(identity, 'SIGKILL');
        await this.waitForExit(identity, 5000);
        throw error;
      }
      return identity;
    } finally {
      if (stdout !== log) await stdout.close();
      await log.close();
    }
  }

  async adopt(vm: VmLayout): Promise<ProcessIdentity | undefined> {
    const identity = await readPidFile(vm.pidFile);
    return identity && (await isProcessAlive(identity)) ? identity : undefined;
  }

  isAlive(process: ProcessIdentity): Promise<boolean> {
    return isProcessAlive(process);
  }

  async signal(process: ProcessIdentity, signal: NodeJS.Signals): Promise<void> {
    if (!(await isProcessAlive(process))) return;
    try {
      globalThis.process.kill(process.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }

  async waitForExit(process: ProcessIdentity, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (await isProcessAlive(process)) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  async forget(vm: VmLayout): Promise<void> {
    await rm(vm.pidFile, { force: true });
    await leaveCgroup(this.placement, vm.id).catch((error: unknown) => this.log.warn({ err: error, vm_id: vm.id }, 'could not remove the VM cgroup'));
  }
}

function writePidFile(vm: VmLayout, identity: ProcessIdentity): Promise<void> {
  return writeFileAtomically(vm.pidFile, JSON.stringify({ pid: identity.pid, start_ticks: identity.startTicks }), 0o644);
}
