import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { type HttpServer, listenOn } from '../http/http-server.js';
import { dialableHostPort, urlOf } from '../kit/listen-address.js';
import type { Logger } from '../kit/logger.js';
import { mintSecret } from '../kit/secret.js';
import { UndoStack } from '../kit/undo-stack.js';
import { type DirLock, lockDirectory } from '../kit/dir-lock.js';
import { NexusError } from '../kit/nexus-error.js';
import { PeriodicTask } from '../kit/periodic-task.js';
import { ManagerLink } from './app/manager-link.js';
import { httpManager } from './host/http-manager-api.js';
import { ImageStore } from './host/image-store.js';
import { VmLogKeeper } from './host/vm-log-keeper.js';
import { imagesDir } from '../contracts/vm-layout.js';
import type { AgentConfig } from './config.js';
import { CapacityProbe } from './host/capacity-probe.js';
import type { KvmProbeResult } from './host/kvm-probe.js';
import { type AgentIdentity, CredentialStore } from './host/credential-store.js';
import { AgentMetrics } from './app/agent-metrics.js';
import { AgentCredentials } from './app/agent-credentials.js';
import { createAgentServer } from './http/agent-server.js';
import type { VmmName } from '../contracts/machine-spec.js';
import { vmUseCases } from './app/vm-use-cases.js';
import { QemuDriver, qemuFilesOf } from './drivers/qemu/qemu-driver.js';
import { FirecrackerDriver, firecrackerFilesOf } from './drivers/firecracker/firecracker-driver.js';
import { FsVmStore } from './host/fs-vm-store.js';
import { procHostCounters } from './host/vm-metrics.js';
import { ProcVmmProcessFinder } from './host/supervisor/vmm-process-scan.js';
import { firecrackerApiVersionOf } from './host/driver-probe.js';
import { BridgeNetwork } from './host/net/bridge-network.js';
import { DetachedSupervisor } from './host/supervisor/detached-supervisor.js';
import { type HostLeftovers, HostSweep } from './host/host-sweep.js';
import { detectPlacement } from './host/supervisor/process-placement.js';
import { hostTscKhz } from '../kit/host-tsc.js';
import type { VmmDriver, VmmFilesByDriver } from './ports/vmm-driver.js';
import type { ProcessSupervisor } from './ports/process-supervisor.js';
import type { HostNetwork } from './ports/host-network.js';
import type { HostCapacity } from '../contracts/agent-api.js';

export type { HostLeftovers } from './host/host-sweep.js';
// What the CLI runs on a host beside the agent itself (`nexus doctor`, `nexus dev`): see cli/launcher.ts.
export { type RequirementCheck, aptInstall, checkHostRequirements, planInstall } from './host/host-requirements.js';
export { probeKvm } from './host/kvm-probe.js';
export { CredentialStore } from './host/credential-store.js';

export interface RunningAgent {
  url: string;
  identity: AgentIdentity;
  server: HttpServer;
  close(): Promise<void>;
  /** With `stopVmsOnExit`: while `close` runs, kill the VMMs still running instead of waiting for their guests. */
  hurry?(): void;
}

/**
 * With `stopVmsOnExit`, how many VMs are stopped at once. Bounded: each stop holds a QMP connection
 * and waits on its guest, whose shutdown needs the host's CPUs as much as the others'.
 */
const STOP_ALL_CONCURRENCY = 8;
/** How long each guest gets to power off on the power button before its VMM is ended. */
const POWER_OFF_TIMEOUT_MS = 3000;
/** Every driver's files, known for VMs whose driver this host lacks too. */
const VMM_FILES: VmmFilesByDriver = { qemu: qemuFilesOf, firecracker: firecrackerFilesOf };

/** What the agent does the host's work with: the real host, or (in load tests only) a hollow one. */
export interface AgentHost {
  capacity(): Promise<HostCapacity>;
  supervisor: ProcessSupervisor;
  network: HostNetwork;
  drivers: ReadonlyMap<VmmName, VmmDriver>;
}

/** How `realAgentHost` probes the machine. */
export interface HostProbes {
  /**
   * Whether KVM runs guests; default: run the probe guest. Tests where no KVM does stand in a yes,
   * to build the Firecracker driver the production way around its API double.
   */
  kvm?: (qemuBinary: string) => Promise<KvmProbeResult>;
}

/** This machine: probed KVM and VMM binaries, detached VMM processes, the bridge and its TAPs. */
export async function realAgentHost(config: AgentConfig, log: Logger, probes: HostProbes = {}): Promise<AgentHost> {
  const capacity = new CapacityProbe(config, probes.kvm);
  const facts = await capacity.init();
  log.info({ kvm: facts.kvm, drivers: facts.drivers }, 'host probed');
  const placement = await detectPlacement();
  log.info({ placement: placement.kind }, 'VMM processes run detached, each in its own session');
  const supervisor = new DetachedSupervisor(placement, log);
  const network = networkOf(config, log);
  const drivers = new Map<VmmName, VmmDriver>();
  const firecracker = facts.drivers.find((driver) => driver.name === 'firecracker');
  const apiVersion = firecracker?.available && firecracker.version ? firecrackerApiVersionOf(firecracker.version) : undefined;
  if (apiVersion) {
    if (config.jailer) await mkdir(config.jailer.chrootBaseDir, { recursive: true, mode: 0o755 });
    drivers.set(
      'firecracker',
      new FirecrackerDriver({ binary: config.firecrackerBinary, apiVersion, jailer: config.jailer, logLevel: config.firecrackerLogLevel }, supervisor),
    );
  }
  if (facts.drivers.find((driver) => driver.name === 'qemu')?.available) {
    drivers.set('qemu', new QemuDriver({ binary: config.qemuBinary, accel: facts.kvm.usable ? 'kvm' : 'tcg', tscKhz: await hostTscKhz() }, supervisor));
  }
  return { capacity: () => capacity.measure(), supervisor, network, drivers };
}

/**
 * Takes the run dir for this process (`<run-dir>/nexus.lock`), refusing while another live process
 * holds it: an agent, or `nexus dev` sweeping what its agent left.
 */
export function lockRunDir(runDir: string, purpose: string): Promise<DirLock> {
  return lockDirectory(runDir, purpose, {
    suggestion: (pid) =>
      `Another agent (process ${pid}) runs on this run dir: stop it first, or give this one a run dir of its own (--run-dir, FC_RUN_DIR). Two agents on one run dir would stop and sweep each other's VMs.`,
  });
}

/**
 * The host sweep of a run dir on this machine (real supervisor and bridge, from `config`), for
 * `nexus dev`: it counts the VMMs its agent still has, checks what is left once the agent has
 * exited, and ends what an agent that died left behind (holding the run dir's lock meanwhile, so
 * never while an agent runs there).
 */
export async function agentHostSweep(
  config: AgentConfig,
  log: Logger,
): Promise<{ leftovers(): Promise<HostLeftovers>; runningVmms(): Promise<number>; sweep(): Promise<number> }> {
  const supervisor = new DetachedSupervisor(await detectPlacement(), log);
  const network = networkOf(config, log);
  const sweep = new HostSweep(new FsVmStore(config.runDir), new ProcVmmProcessFinder(config.runDir, config.jailer?.chrootBaseDir), supervisor, network, log);
  return {
    leftovers: () => sweep.leftovers(),
    runningVmms: async () => (await sweep.runningVmms()).length,
    sweep: async () => {
      const lock = await lockRunDir(config.runDir, 'nexus dev, sweeping what its agent left');
      try {
        return await sweep.sweep();
      } finally {
        await lock.release();
      }
    },
  };
}

/**
 * The agent's composition root. Order matters: probe the host, establish the identity (enroll if
 * needed), serve, then heartbeat, so the manager never hears of an agent it cannot reach.
 * `host` defaults to this machine; only load tests pass another.
 */
export async function startAgent(config: AgentConfig, log: Logger, host?: AgentHost): Promise<RunningAgent> {
  await mkdir(config.runDir, { recursive: true, mode: 0o755 });
  // One agent per run dir, for its whole life: two would manage, sweep and (with stopVmsOnExit)
  // stop each other's VMs. Taken before anything touches the host, so a refused agent touches nothing.
  const lock = await lockRunDir(config.runDir, `nexus agent, API on ${dialableHostPort(config.bind)}`);
  try {
    return await startLocked(config, log, host, lock);
  } catch (error) {
    await lock.release();
    throw error;
  }
}

/** `startAgent` once the run dir is ours: the lock is released when the agent closes. */
async function startLocked(config: AgentConfig, log: Logger, host: AgentHost | undefined, lock: DirLock): Promise<RunningAgent> {
  const { capacity, supervisor, network, drivers } = host ?? (await realAgentHost(config, log));
  // Firecracker where it runs (production), QEMU where Firecracker or KVM is missing.
  const defaultDriver: VmmName = drivers.has('firecracker') ? 'firecracker' : 'qemu';
  const metrics = new AgentMetrics();
  const measured = new Map([...drivers].map(([name, driver]) => [name, metrics.measured(driver)] as const));
  const vmStore = new FsVmStore(config.runDir);
  const processes = new ProcVmmProcessFinder(config.runDir, config.jailer?.chrootBaseDir);
  const useCases = vmUseCases(
    { drivers: measured, defaultDriver, files: VMM_FILES },
    { store: vmStore, supervisor, network, processes, counters: procHostCounters, sweeper: new HostSweep(vmStore, processes, supervisor, network, log) },
    log,
    { onOrphansRemoved: (removed) => metrics.countRemoved(removed) },
  );
  const { vms, leftovers } = useCases;

  const store = new CredentialStore(config.stateDir);
  const stored = await store.load();
  const undo = new UndoStack(log);
  undo.push('release the run dir', () => lock.release());
  const forceStop = new AbortController();
  // Armed only once the agent is bound and enrolled: one that fails to start (its port taken, its
  // join token refused) ends no VM. Registered before the server, so it runs once the server has
  // stopped serving: nothing can start a VM while they stop.
  let stopVmsOnClose = false;
  undo.push('stop the VMs and remove their network', async () => {
    if (stopVmsOnClose) await vms.stopAll({ concurrency: STOP_ALL_CONCURRENCY, timeoutMs: POWER_OFF_TIMEOUT_MS, force: forceStop.signal });
  });
  try {
    const credentials = new AgentCredentials(store, config.credentialOverlapMs, log);
    const server = await createAgentServer(
      { credentials, startedAt: Date.now(), capacity, vms: useCases },
      { logger: log, proxyTimeoutMs: config.proxyTimeoutMs, tls: config.tls.server },
    );
    undo.push('stop serving HTTP', () => server.close());
    metrics.registerOn(server.metrics.registry);
    // Leftovers that belong to no VM this agent knows (a crash mid-delete, a hand-made mess) go
    // first, in a fixed order: VMM processes, TAPs, sockets, folders. A process running from a
    // known VM's folder that no pid file names is left for the manager to judge.
    const { vms: known, orphans } = await leftovers.inventory();
    const knownIds = new Set(known.map((vm) => vm.id));
    const swept = await leftovers.collectOrphans({
      processes: orphans.processes.filter((entry) => !knownIds.has(entry.vm_id)).map((entry) => entry.pid),
      taps: orphans.taps,
      sockets: orphans.sockets,
      dirs: orphans.dirs,
      // Which snapshots are leftovers is the manager's to say: they outlive VMs.
      snapshots: [],
    });
    if (Object.values(swept).some((list) => list.length > 0)) log.info({ swept }, 'swept leftovers on start');
    const expiry = new PeriodicTask(1000, () =>
      useCases.expiry.expireDue(new Date()).then(
        () => undefined,
        (error: unknown) => log.error({ err: error }, 'could not delete expired VMs'),
      ),
    );
    expiry.start();
    undo.push('stop the expiry watch', () => expiry.stop());
    const sampling = new PeriodicTask(config.metricsIntervalMs, () =>
      useCases.metrics.sample().then(
        () => undefined,
        (error: unknown) => log.error({ err: error }, 'could not sample VM metrics'),
      ),
    );
    sampling.start();
    undo.push('stop sampling VM metrics', () => sampling.stop());
    const consoles = new VmLogKeeper(config.runDir, config.vmLogMaxBytes, log);
    const consoleWatch = new PeriodicTask(10_000, () =>
      consoles.sweep().then(
        () => undefined,
        (error: unknown) => log.error({ err: error }, 'could not cap the VM logs'),
      ),
    );
    consoleWatch.start();
    undo.push('stop the console log watch', () => consoleWatch.stop());
    // Bind first: the address we advertise when enrolling must be the one we really hold.
    const bound = await listenOn(server, config.bind);
    const advertised = config.advertise ?? dialableHostPort(bound);
    if (!config.advertise && config.managerUrl && (bound.host === '0.0.0.0' || bound.host === '::')) {
      log.warn({ advertised }, 'bound to all interfaces without AGENT_ADVERTISE: a manager on another machine cannot reach the loopback address advertised');
    }

    let link: ManagerLink | undefined;
    if (config.managerUrl) {
      const images = new ImageStore(imagesDir(config.runDir), log);
      link = new ManagerLink(
        { managerUrl: config.managerUrl, name: config.name, address: advertised },
        httpManager(config.managerUrl, config.tls.ca),
        capacity,
        () => images.list(),
        log,
      );
      credentials.establish(await link.establish(store, stored, config.joinToken));
    } else {
      const identity = stored ?? { credential: mintSecret('nxhc') };
      if (!stored) await store.save(identity);
      credentials.establish(identity);
      log.info({ identity_file: store.path }, 'standalone agent: callers use the credential in the identity file');
    }
    const identity = (): AgentIdentity => credentials.current() as AgentIdentity;

    if (link) {
      link.startHeartbeats(identity);
      undo.push('stop heartbeats', () => link.stop());
    }
    const url = urlOf(bound, config.tls.server !== undefined);
    stopVmsOnClose = config.stopVmsOnExit;
    log.info({ url, host_id: identity().enrollment?.hostId, run_dir: config.runDir }, 'agent listening');
    return {
      url,
      get identity() {
        return identity();
      },
      server,
      close: async () => {
        const failed = await undo.unwindReporting();
        // Logged one by one already; thrown so the process exits non-zero, never claiming a clean stop.
        if (failed.length > 0) {
          throw new NexusError('unavailable', `the agent did not stop cleanly: could not ${failed.map((failure) => failure.label).join('; could not ')}`, {
            cause: failed[0]?.error,
            suggestion: 'Read the errors logged above; `nexus dev` sweeps what its agent left.',
          });
        }
      },
      ...(config.stopVmsOnExit ? { hurry: () => forceStop.abort() } : {}),
    };
  } catch (error) {
    await undo.unwind();
    throw error;
  }
}

/** The host's guest networking as the agent's configuration has it; its VMs' records and DHCP servers live in `<run-dir>/net`. */
function networkOf(config: AgentConfig, log: Logger): BridgeNetwork {
  return new BridgeNetwork(
    { bridge: config.bridge, cidr: config.bridgeCidr, nat: config.nat, natBackend: config.firewall, netDir: join(config.runDir, 'net') },
    log,
  );
}
