/**
 * The agent's VM use cases over in-memory fakes of every port (VM store, supervisor, network,
 * process table, counters), with the real host sweep on top: the agent's core, tested in
 * milliseconds without root, QEMU or a disk.
 */
import { vmUseCases } from '../../src/agent/app/vm-use-cases.js';
import { firecrackerFilesOf } from '../../src/agent/drivers/firecracker/firecracker-driver.js';
import { qemuFilesOf } from '../../src/agent/drivers/qemu/qemu-driver.js';
import { HostSweep } from '../../src/agent/host/host-sweep.js';
import type { VmmDriver } from '../../src/agent/ports/vmm-driver.js';
import type { MachineSpec } from '../../src/contracts/machine-spec.js';
import { imagesDir } from '../../src/contracts/vm-layout.js';
import { captureLogger } from '../support/capture-logger.js';
import { HollowDriver, HollowNetwork, HollowSupervisor } from './hollow-host.js';
import { MemoryVmStore, MemoryVmmProcesses, fixedCounters } from './memory-vm-store.js';

export interface FakeAgentOptions {
  /** The host's one driver (default a hollow QEMU over the fake supervisor). */
  driver?: (supervisor: HollowSupervisor) => VmmDriver;
  now?: () => Date;
}

export function fakeAgentCore(options: FakeAgentOptions = {}) {
  const store = new MemoryVmStore();
  const supervisor = new HollowSupervisor();
  const network = new HollowNetwork();
  const processes = new MemoryVmmProcesses();
  const logger = captureLogger();
  const driver = options.driver?.(supervisor) ?? new HollowDriver(supervisor, {});
  const sweeper = new HostSweep(store, processes, supervisor, network, logger.log);
  const removed: unknown[] = [];
  const useCases = vmUseCases(
    { drivers: new Map([[driver.name, driver]]), defaultDriver: driver.name, files: { qemu: qemuFilesOf, firecracker: firecrackerFilesOf } },
    { store, supervisor, network, processes, counters: fixedCounters, sweeper },
    logger.log,
    { onOrphansRemoved: (entry) => removed.push(entry), ...(options.now ? { now: options.now } : {}) },
  );
  const images = `${imagesDir(store.runDir)}/base`;
  store.put(`${images}/vmlinux`, 'kernel');
  store.put(`${images}/rootfs.ext4`, 'root filesystem');
  /** A spec from the fake image store: one writable root drive, one NIC. */
  const spec = (extra: Partial<MachineSpec> = {}): MachineSpec => ({
    vcpu: 1,
    mem_mib: 128,
    kernel: { path: `${images}/vmlinux`, cmdline: 'console=ttyS0' },
    drives: [{ id: 'rootfs', path: `${images}/rootfs.ext4`, is_root: true }],
    nics: [{}],
    ...extra,
  });
  return { ...useCases, store, supervisor, network, processes, driver, sweeper, logger, removed, images, spec };
}
