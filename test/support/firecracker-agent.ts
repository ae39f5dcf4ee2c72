import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { FirecrackerDriver } from '../../src/agent/drivers/firecracker/firecracker-driver.js';
import type { FirecrackerApiVersion } from '../../src/agent/drivers/firecracker/firecracker-requests.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { type AgentHost, type RunningAgent, realAgentHost, startAgent } from '../../src/agent/main.js';
import { tapNameOf } from '../../src/contracts/host-names.js';
import type { VmmName } from '../../src/contracts/machine-spec.js';
import type { VmmDriver } from '../../src/agent/ports/vmm-driver.js';
import { captureLogger } from './capture-logger.js';
import { testBridgeCidr, testBridgeName } from './net-names.js';
import { send } from './test-manager.js';

const run = promisify(execFile);

/** The Firecracker API double, spawned with the real binary's flags (test/doubles). */
export const FIRECRACKER_DOUBLE = fileURLToPath(new URL('../doubles/firecracker-double', import.meta.url));
/** Stands in for the jailer: makes the jail, drops privileges, runs the double inside. */
export const JAILER_DOUBLE = fileURLToPath(new URL('../doubles/jailer-double', import.meta.url));
/** The first of the unprivileged ids the jailed doubles run as (each VM one of its own, uid = gid). */
export const JAILED_ID = 54_321;
/** The same double enforcing the v1.16.1 API (the real binary's argv cannot carry a version). */
export const FIRECRACKER_DOUBLE_V1_16 = fileURLToPath(new URL('../doubles/firecracker-double-v1-16', import.meta.url));

export interface FirecrackerAgent {
  agent: RunningAgent;
  host: AgentHost;
  runDir: string;
  bridge: string;
  /** Calls the agent with its credential. */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; headers: Headers; body: any }>;
  /**
   * Removes a VM from this host whatever became of it (the agent's delete: VMM process, TAP,
   * sockets, folder), for a test's cleanup. Throws when the delete failed or left the TAP (which
   * it then removes by hand), so a leak fails the test instead of staying on the host.
   */
  removeVm(id: string): Promise<void>;
  /** Stops the agent and removes its bridge. */
  close(): Promise<void>;
}

export interface FirecrackerAgentOptions {
  runDir: string;
  managerUrl?: string;
  joinToken?: string;
  name?: string;
  apiVersion?: FirecrackerApiVersion;
  proxyTimeoutMs?: number;
  /** Launch through the jailer double, with `<run-dir>/jail` as the chroot base. */
  jailed?: boolean;
  /** How many ids, from JAILED_ID on, the jailed VMs may take. Default 8. */
  jailedIds?: number;
}

/**
 * A real agent (in this process) whose Firecracker driver runs the API double, beside the host's
 * real QEMU driver: real supervisor, real bridge and TAPs; the double stands in for the binary,
 * which cannot run here. Test-only composition: production picks drivers from the host probe.
 */
export async function startFirecrackerAgent(options: FirecrackerAgentOptions): Promise<FirecrackerAgent> {
  const bridge = testBridgeName();
  const config = resolveAgentConfig(
    { bind: '127.0.0.1:0', runDir: options.runDir, managerUrl: options.managerUrl, joinToken: options.joinToken, name: options.name ?? 'fc-double' },
    {
      NEXUS_BRIDGE: bridge,
      NEXUS_BRIDGE_CIDR: testBridgeCidr(),
      NEXUS_NAT: 'off',
      NEXUS_PROXY_TIMEOUT_MS: String(options.proxyTimeoutMs ?? 10_000),
      NEXUS_METRICS_INTERVAL_MS: '300',
      // The jailer settings as an operator gives them, with the jailer double as the binary.
      ...(options.jailed
        ? {
            NEXUS_JAILER_BIN: JAILER_DOUBLE,
            NEXUS_JAILER_UID_RANGE: `${JAILED_ID}-${JAILED_ID + (options.jailedIds ?? 8) - 1}`,
            NEXUS_JAILER_CHROOT_BASE: join(options.runDir, 'jail'),
          }
        : {}),
    },
  );
  const { log } = captureLogger(`fc-agent-${options.name ?? 'fc-double'}`);
  const real = await realAgentHost(config, log);
  const apiVersion = options.apiVersion ?? '1.17';
  const jailer = config.jailer;
  if (jailer) mkdirSync(jailer.chrootBaseDir, { recursive: true });
  const binary = apiVersion === '1.16' ? FIRECRACKER_DOUBLE_V1_16 : FIRECRACKER_DOUBLE;
  const driver = new FirecrackerDriver({ binary, apiVersion, ...(jailer ? { jailer } : {}) }, real.supervisor);
  const host: AgentHost = {
    ...real,
    drivers: new Map<VmmName, VmmDriver>([...real.drivers, ['firecracker', driver]]),
    capacity: async () => {
      const measured = await real.capacity();
      const double = { name: 'firecracker' as const, available: true, version: `API double (${apiVersion})` };
      return { ...measured, drivers: [...measured.drivers.filter((entry) => entry.name !== 'firecracker'), double] };
    },
  };
  const agent = await startAgent(config, log, host);
  const credential = agent.identity.credential;
  const call: FirecrackerAgent['call'] = (method, path, body) =>
    send(`${agent.url}${path}`, { method, body, headers: { authorization: `Bearer ${credential}` } });
  return {
    agent,
    host,
    runDir: options.runDir,
    bridge,
    call,
    removeVm: async (id) => {
      const deleted = await call('DELETE', `/agent/v1/vms/${id}`).catch((error: unknown) => ({ status: 0, body: String(error) }));
      const tap = tapNameOf(id);
      const leftTap = (await readLink(tap)) !== undefined;
      if (leftTap) await run('ip', ['link', 'del', 'dev', tap]);
      if (deleted.status !== 200 || leftTap) {
        throw new Error(
          `removing VM ${id}: the agent's delete answered ${deleted.status} ${JSON.stringify(deleted.body)}${leftTap ? `, and its TAP ${tap} was left (now removed)` : ''}`,
        );
      }
    },
    close: async () => {
      await agent.close();
      await run('ip', ['link', 'del', 'dev', bridge]).catch(() => undefined);
    },
  };
}

/** The folder of a test run dir's fake image files the double accepts (it checks they exist). */
export function doubleImage(runDir: string): { kernel: string; rootfs: string } {
  const dir = join(runDir, 'images', 'fc');
  return { kernel: join(dir, 'vmlinux'), rootfs: join(dir, 'rootfs.ext4') };
}

/** The agent's MachineSpec of a small VM on {@link doubleImage}'s files with one NIC; `extra` adds or replaces fields. */
export function doubleVmSpec(runDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const image = doubleImage(runDir);
  return {
    vcpu: 1,
    mem_mib: 128,
    kernel: { path: image.kernel, cmdline: 'console=ttyS0 reboot=k panic=1' },
    drives: [{ id: 'rootfs', path: image.rootfs, is_root: true }],
    nics: [{}],
    ...extra,
  };
}
