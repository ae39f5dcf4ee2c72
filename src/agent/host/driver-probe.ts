import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { DriverAvailability } from '../../contracts/agent-api.js';
import { FIRECRACKER_API_VERSIONS, type FirecrackerApiVersion } from '../drivers/firecracker/firecracker-requests.js';
import type { KvmProbeResult } from './kvm-probe.js';

const run = promisify(execFile);

/** The first line of `<binary> --version`, or why it could not be run. */
async function versionOf(binary: string): Promise<{ version: string } | { reason: string }> {
  try {
    const { stdout } = await run(binary, ['--version'], { timeout: 5000 });
    return { version: stdout.trim().split('\n')[0] ?? '' };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { reason: code === 'ENOENT' ? `${binary} not found` : `${binary} --version failed: ${(error as Error).message}` };
  }
}

/** QEMU runs guests with KVM when it works and with TCG emulation otherwise: its binary is enough. */
export async function probeQemu(qemuBinary: string): Promise<DriverAvailability> {
  const found = await versionOf(qemuBinary);
  return 'version' in found
    ? { name: 'qemu', available: true, version: found.version }
    : { name: 'qemu', available: false, reason: `${found.reason} (Debian package qemu-system-x86)` };
}

/** Firecracker needs its binary, in a version whose API the driver speaks, and a KVM that really runs guests. */
export async function probeFirecracker(firecrackerBinary: string, kvm: KvmProbeResult, jailerBinary?: string): Promise<DriverAvailability> {
  const found = await versionOf(firecrackerBinary);
  if (!('version' in found)) return { name: 'firecracker', available: false, reason: `${found.reason} (set NEXUS_FIRECRACKER_BIN)` };
  const api = firecrackerApiVersionOf(found.version);
  if (!api) {
    return {
      name: 'firecracker',
      available: false,
      version: found.version,
      reason: `unsupported version: the driver speaks the API of Firecracker ${FIRECRACKER_API_VERSIONS.join(' and ')}`,
    };
  }
  if (!kvm.usable) return { name: 'firecracker', available: false, version: found.version, reason: `KVM unusable: ${kvm.reason ?? 'unknown'}` };
  if (jailerBinary) {
    const jailer = await versionOf(jailerBinary);
    if (!('version' in jailer))
      return { name: 'firecracker', available: false, version: found.version, reason: `the jailer: ${jailer.reason} (NEXUS_JAILER_BIN)` };
  }
  return { name: 'firecracker', available: true, version: found.version };
}

/**
 * The API version to speak to a binary from its `--version` line (`Firecracker v1.16.1`): its own
 * when the driver knows it, the newest known for a newer 1.x (its API only grows), none for older.
 */
export function firecrackerApiVersionOf(versionLine: string): FirecrackerApiVersion | undefined {
  const match = /v?(\d+)\.(\d+)\.\d+/.exec(versionLine);
  if (!match) return undefined;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  const known = FIRECRACKER_API_VERSIONS.find((version) => version === `${major}.${minor}`);
  if (known) return known;
  const newest = FIRECRACKER_API_VERSIONS.at(-1) as FirecrackerApiVersion;
  return major === 1 && minor > Number(newest.split('.')[1]) ? newest : undefined;
}
