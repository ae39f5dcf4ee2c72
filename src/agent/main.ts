import { mkdir } from 'node:fs/promises';
import { type HttpServer, listenOn } from '../kit/http/http-server.js';
import { dialableHostPort, urlOf } from '../kit/listen-address.js';
import type { Logger } from '../kit/logger.js';
import { mintSecret } from '../kit/secret.js';
import { UndoStack } from '../kit/undo-stack.js';
import { PeriodicTask } from '../kit/periodic-task.js';
import { ManagerLink } from './app/manager-link.js';
import { ImageStore } from './host/image-store.js';
import { VmLogKeeper } from './host/vm-log-keeper.js';
import { imagesDir } from '../contracts/vm-layout.js';
import type { AgentConfig } from './config.js';
import { CapacityProbe } from './host/capacity-probe.js';
import { type AgentIdentity, CredentialStore } from './host/credential-store.js';
import { AgentMetrics } from './app/agent-metrics.js';
import { AgentCredentials } from './app/agent-credentials.js';
import { createAgentServer } from './http/agent-server.js';
import type { VmmName } from '../contracts/machine-spec.js';
import { VmService } from './app/vm-service.js';
import { QemuDriver } from './drivers/qemu/qemu-driver.js';
import { FirecrackerDriver } from './drivers/firecracker/firecracker-driver.js';
import { firecrackerApiVersionOf } from './host/driver-probe.js';
import { BridgeNetwork } from './host/net/bridge-network.js';
import { DetachedSupervisor } from './host/supervisor/detached-supervisor.js';
import { detectPlacement } from './host/supervisor/process-placement.js';
import { hostTscKhz } from '../kit/host-tsc.js';
import type { VmmDriver } from './ports/vmm-driver.js';
import type { ProcessSupervisor } from './ports/process-supervisor.js';
import type { HostNetwork } from './ports/host-network.js';
import type { HostCapacity } from '../contracts/agent-api.js';

export interface RunningAgent {
  url: string;
  identity: AgentIdentity;
  server: HttpServer;
  close(): Promise<void>;
}

/** What the agent does the host's work with: the real host, or (in load tests only) a hollow one. */
export interface AgentHost {
  capacity(): Promise<HostCapacity>;
  supervisor: ProcessSupervisor;
  network: HostNetwork;
  drivers: ReadonlyMap<VmmName, VmmDriver>;
}

/** This machine: probed KVM and VMM binaries, detached VMM processes, the bridge and its TAPs. */
export async function realAgentHost(config: AgentConfig, log: Logger): Promise<AgentHost> {
  const capacity = new CapacityProbe(config);
  const facts = await capacity.init();
  log.info({ kvm: facts.kvm, drivers: facts.drivers }, 'host probed');
  const placement = await detectPlacement();
  log.info({ placement: placement.kind }, 'VMM processes run detached, each in its own session');
  const supervisor = new DetachedSupervisor(placement, log);
  const tapOwner = config.jailer ? { uid: config.jailer.uid, gid: config.jailer.gid } : undefined;
  const network = new BridgeNetwork({ bridge: config.bridge, cidr: config.bridgeCidr, nat: config.nat, ...(tapOwner ? { tapOwner } : {}) }, log);
  const drivers = new Map<VmmName, VmmDriver>();
  const firecracker = facts.drivers.find((driver) => driver.name === 'firecracker');
  const apiVersion = firecracker?.available && firecracker.version ? firecrackerApiVersionOf(firecracker.version) : undefined;
  if (apiVersion) {
    if (config.jailer) await mkdir(config.jailer.chrootBaseDir, { recursive: true, mode: 0o755 });
    drivers.set('firecracker', new FirecrackerDriver({ binary: config.firecrackerBinary, apiVersion, jailer: config.jailer, logLevel: config.firecrackerLogLevel }, supervisor));
  }
  if (facts.drivers.find((driver) => driver.name === 'qemu')?.available) {
    drivers.set('qemu', new QemuDriver({ binary: config.qemuBinary, accel: facts.kvm.usable ? 'kvm' : 'tcg', tscKhz: await hostTscKhz() }, supervisor));
  }
  return { capacity: () => capacity.measure(), supervisor, network, drivers };
}

/**
 * The agent's composition root. Order matters: probe the host, establish the identity (enroll if
 * needed), serve, then heartbeat, so the manager never hears of an agent it cannot reach.
 * `host` defaults to this machine; only load tests pass another.
 */
export async function startAgent(config: AgentConfig, log: Logger, host?: AgentHost): Promise<RunningAgent> {
  await mkdir(config.runDir, { recursive: true, mode: 0o755 });
  const { capacity, supervisor, network, drivers } = host ?? (await realAgentHost(config, log));
  // Firecracker where it runs (production), QEMU where Firecracker or KVM is missing.
  const defaultDriver: VmmName = drivers.has('firecracker') ? 'firecracker' : 'qemu';
  const metrics = new AgentMetrics();
  const measured = new Map([...drivers].map(([name, driver]) => [name, metrics.measured(driver)] as const));
  const vms = new VmService(
    { runDir: config.runDir, drivers: measured, defaultDriver, jailBase: config.jailer?.chrootBaseDir, onOrphansRemoved: (removed) => metrics.countRemoved(removed) },
    supervisor,
    network,
    log,
  );

  const store = new CredentialStore(config.stateDir);
  const stored = await store.load();
  const undo = new UndoStack(log);
  try {
    const credentials = new AgentCredentials(store, config.credentialOverlapMs, log);
    const server = await createAgentServer(
      { credentials, startedAt: Date.now(), capacity, vms },
      { logger: log, proxyTimeoutMs: config.proxyTimeoutMs, tls: config.tls.server },
    );
    undo.push('stop serving HTTP', () => server.close());
    metrics.registerOn(server.metrics.registry);
    if (config.stopVmsOnExit) undo.push('stop the VMs this agent runs', () => stopAllVms(vms, log));
    // Leftovers that belong to no VM this agent knows (a crash mid-delete, a hand-made mess) go
    // first, in a fixed order: VMM processes, TAPs, sockets, folders. A process running from a
    // known VM's folder that no pid file names is left for the manager to judge.
    const { vms: known, orphans } = await vms.inventory();
    const knownIds = new Set(known.map((vm) => vm.id));
    const swept = await vms.collectOrphans({
      processes: orphans.processes.filter((entry) => !knownIds.has(entry.vm_id)).map((entry) => entry.pid),
      taps: orphans.taps,
      sockets: orphans.sockets,
      dirs: orphans.dirs,
    });
    if (Object.values(swept).some((list) => list.length > 0)) log.info({ swept }, 'swept leftovers on start');
    const expiry = new PeriodicTask(1000, () =>
      vms.expireDue(new Date()).then(
        () => undefined,
        (error: unknown) => log.error({ err: error }, 'could not delete expired VMs'),
      ),
    );
    expiry.start();
    undo.push('stop the expiry watch', () => expiry.stop());
    const sampling = new PeriodicTask(config.metricsIntervalMs, () =>
      vms.sampleMetrics().then(
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
        { managerUrl: config.managerUrl, name: config.name, address: advertised, managerCa: config.tls.ca },
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
    log.info({ url, host_id: identity().enrollment?.hostId, run_dir: config.runDir }, 'agent listening');
    return {
      url,
      get identity() {
        return identity();
      },
      server,
      close: () => undo.unwind(),
    };
  } catch (error) {
    await undo.unwind();
    throw error;
  }
}


/** Stops every running VM on this host (for `nexus dev`, whose VMs live as long as it does). */
async function stopAllVms(vms: VmService, log: Logger): Promise<void> {
  const { vms: all } = await vms.inventory();
  await Promise.all(
    all
      .filter((vm) => vm.pid !== null)
      .map((vm) =>
        vms.act(vm.id, 'stop', 3000).catch((error: unknown) => log.error({ err: error, vm_id: vm.id }, 'could not stop a VM on exit')),
      ),
  );
}
