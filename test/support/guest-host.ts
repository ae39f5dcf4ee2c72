import { execFile } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ManagerOptions } from '../../src/manager/config.js';
import { type AgentHarness, startAgentProcess } from './agent-harness.js';
import { testGuestImage } from './guest-image.js';
import { eventually } from './nexus-process.js';
import { testBridgeCidr, testBridgeName } from './net-names.js';
import { endGuests } from './guest-teardown.js';
import { tempDir } from './temp-dir.js';
import { type TestManager, startTestManager } from './test-manager.js';

export interface GuestHost {
  manager: TestManager;
  agent: AgentHarness;
  runDir: string;
  /** The test image's folder under the run dir (vmlinux, initrd.img, rootfs.ext4). */
  images: string;
  /** The shared image cache the run dir's images/ links to. */
  imageStore: string;
  /** `a.b.c` of the bridge's /24: guests take `${subnet}.N`, the host is `${subnet}.1`. */
  subnet: string;
  /** A create body for a guest of the test image, with `extra` fields. */
  guest(name: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** Deletes what VMs are left, stops the agent and the manager, removes the bridge and the run dir. */
  close(): Promise<void>;
}

/**
 * A manager (in this process) with one real agent process enrolled, on a bridge of its own, whose
 * run dir links to the test image: the set-up of tests and benches that run real guests.
 */
export async function startGuestHost(
  options: {
    manager?: ManagerOptions;
    agentEnv?: Record<string, string>;
    /** The run dir on a tmpfs of this size (MiB) of its own: a small disk that fills up. */
    runDirMib?: number;
  } = {},
): Promise<GuestHost> {
  const dir = tempDir('nexus-guest-host-');
  const runDir = join(dir.path, 'run');
  const bridge = testBridgeName();
  const cidr = testBridgeCidr();
  const image = await testGuestImage();
  mkdirSync(runDir, { recursive: true });
  if (options.runDirMib !== undefined) await promisify(execFile)('mount', ['-t', 'tmpfs', '-o', `size=${options.runDirMib}m,mode=0755`, 'tmpfs', runDir]);
  const unmount = async () => {
    if (options.runDirMib !== undefined) await promisify(execFile)('umount', [runDir]);
  };
  const imageStore = join(image.dir, '..');
  symlinkSync(imageStore, join(runDir, 'images'));
  const images = join(runDir, 'images', image.manifest.name);
  const manager = await startTestManager({ resyncMs: 1000, ...options.manager }).catch(async (error: unknown) => {
    await unmount();
    dir.remove();
    throw error;
  });
  let agent: AgentHarness | undefined;
  const agentEnv = { NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: cidr, NEXUS_NAT: 'off', ...options.agentEnv };
  const close = async () => {
    await endGuests(manager.url, agent, runDir, agentEnv);
    await manager.dispose();
    await promisify(execFile)('ip', ['link', 'del', 'dev', bridge]).catch(() => undefined);
    await unmount();
    dir.remove();
  };
  try {
    const token = (await manager.hosts.mintJoinToken(600)).token;
    agent = await startAgentProcess(runDir, { ...agentEnv, NEXUS_JOIN_TOKEN: token }, manager.url);
    await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
  } catch (error) {
    await close();
    throw error;
  }
  return {
    manager,
    agent,
    runDir,
    images,
    imageStore,
    subnet: cidr.split('.').slice(0, 3).join('.'),
    guest: (name, extra = {}) => guestVm(images, name, extra),
    close,
  };
}

/** A POST /v1/vms body for a 1-vCPU, 128 MiB guest of the test image in `images` (its folder), with `extra`. */
export function guestVm(images: string, name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    vcpu: 1,
    mem_mib: 128,
    kernel_path: join(images, 'vmlinux'),
    initrd_path: join(images, 'initrd.img'),
    rootfs_path: join(images, 'rootfs.ext4'),
    ...extra,
  };
}
