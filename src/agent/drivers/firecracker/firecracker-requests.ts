import type { MachineSpec, RateLimit } from '../../../contracts/machine-spec.js';

/** The Firecracker API versions the driver can speak; each request is shaped for one of them. */
export type FirecrackerApiVersion = '1.16' | '1.17';
export const FIRECRACKER_API_VERSIONS: readonly FirecrackerApiVersion[] = ['1.16', '1.17'];

/** One call on the API socket. Mutations answer 204 with no body; GETs answer JSON. */
export interface FirecrackerRequest {
  method: 'GET' | 'PUT' | 'PATCH';
  path: string;
  body?: Record<string, unknown>;
}

/** Where one VMM process keeps its files, as that process sees them (inside the jail, when jailed). */
export interface FirecrackerPaths {
  kernel: string;
  initrd?: string;
  /** Per drive id, in spec order. */
  drives: ReadonlyMap<string, string>;
  logFile: string;
  metricsFile: string;
}

/** What each version accepts beyond the common ground (see the contract's header and the notes). */
const FEATURES: Record<FirecrackerApiVersion, { metricsEmitId: boolean }> = {
  '1.16': { metricsEmitId: false },
  '1.17': { metricsEmitId: true },
};

/**
 * The driver's rate limit (per second) as Firecracker's token buckets: a bucket of one second's
 * worth, refilled every second. Zero or absent removes the limit (a zero bucket, which in a PATCH
 * clears the one set before).
 */
export function rateLimiterOf(limit: RateLimit): { bandwidth: TokenBucket; ops: TokenBucket } {
  return { bandwidth: bucketOf(limit.bytes_per_second), ops: bucketOf(limit.ops_per_second) };
}

interface TokenBucket {
  size: number;
  refill_time: number;
}

function bucketOf(perSecond: number | undefined): TokenBucket {
  return perSecond ? { size: perSecond, refill_time: 1000 } : { size: 0, refill_time: 0 };
}

/** The levels of Firecracker's logger (`PUT /logger`). */
export const FIRECRACKER_LOG_LEVELS = ['Error', 'Warning', 'Info', 'Debug', 'Trace', 'Off'] as const;
export type FirecrackerLogLevel = (typeof FIRECRACKER_LOG_LEVELS)[number];

/** Logger and metrics: the first calls of every process, before a boot or a snapshot load. */
export function observabilityRequests(
  version: FirecrackerApiVersion,
  paths: Pick<FirecrackerPaths, 'logFile' | 'metricsFile'>,
  logLevel: FirecrackerLogLevel = 'Info',
): FirecrackerRequest[] {
  return [
    { method: 'PUT', path: '/logger', body: { log_path: paths.logFile, level: logLevel, show_level: true, show_log_origin: false } },
    {
      method: 'PUT',
      path: '/metrics',
      body: { metrics_path: paths.metricsFile, ...(FEATURES[version].metricsEmitId ? { emit_id: true } : {}) },
    },
  ];
}

/**
 * Everything a fresh process needs before `InstanceStart`, in the order Firecracker wants: machine,
 * boot source, drives (the root drive first, so it is /dev/vda), network. `boot_args` replace
 * Firecracker's defaults, so the spec's command line goes as it is.
 */
export function configureRequests(
  version: FirecrackerApiVersion,
  spec: MachineSpec,
  paths: FirecrackerPaths,
  taps: readonly { tap: string; mac: string }[],
  logLevel: FirecrackerLogLevel = 'Info',
): FirecrackerRequest[] {
  const requests = observabilityRequests(version, paths, logLevel);
  requests.push({ method: 'PUT', path: '/machine-config', body: { vcpu_count: spec.vcpu, mem_size_mib: spec.mem_mib, smt: false } });
  requests.push({
    method: 'PUT',
    path: '/boot-source',
    body: { kernel_image_path: paths.kernel, boot_args: spec.kernel.cmdline, ...(paths.initrd ? { initrd_path: paths.initrd } : {}) },
  });
  const drives = [...spec.drives].sort((a, b) => Number(b.is_root ?? false) - Number(a.is_root ?? false));
  const ids = new Set(drives.map((drive) => driveIdOf(drive.id)));
  if (ids.size !== drives.length) throw new Error(`drive ids ${drives.map((drive) => drive.id).join(', ')} collide once '-' becomes '_' for Firecracker`);
  for (const drive of drives) {
    const path = paths.drives.get(drive.id);
    if (path === undefined) throw new Error(`no path for drive ${drive.id}`);
    requests.push({
      method: 'PUT',
      path: `/drives/${driveIdOf(drive.id)}`,
      body: {
        drive_id: driveIdOf(drive.id),
        path_on_host: path,
        is_root_device: drive.is_root ?? false,
        is_read_only: drive.read_only ?? false,
        ...(drive.rate_limit ? { rate_limiter: rateLimiterOf(drive.rate_limit) } : {}),
      },
    });
  }
  taps.forEach((nic, index) => {
    const id = `eth${index}`;
    requests.push({ method: 'PUT', path: `/network-interfaces/${id}`, body: { iface_id: id, host_dev_name: nic.tap, guest_mac: nic.mac } });
  });
  return requests;
}

export const instanceStart: FirecrackerRequest = { method: 'PUT', path: '/actions', body: { action_type: 'InstanceStart' } };
export const sendCtrlAltDel: FirecrackerRequest = { method: 'PUT', path: '/actions', body: { action_type: 'SendCtrlAltDel' } };
export const flushMetrics: FirecrackerRequest = { method: 'PUT', path: '/actions', body: { action_type: 'FlushMetrics' } };
export const pauseVm: FirecrackerRequest = { method: 'PATCH', path: '/vm', body: { state: 'Paused' } };
export const resumeVm: FirecrackerRequest = { method: 'PATCH', path: '/vm', body: { state: 'Resumed' } };
export const describeInstance: FirecrackerRequest = { method: 'GET', path: '/' };

export function snapshotCreate(statePath: string, memoryPath: string): FirecrackerRequest {
  return { method: 'PUT', path: '/snapshot/create', body: { snapshot_type: 'Full', snapshot_path: statePath, mem_file_path: memoryPath } };
}

/** Loads into a fresh process, left paused (the VmmDriver contract); the memory file is mapped, not copied. */
/**
 * Loads a snapshot, paused. `taps`: the VM's TAPs, by NIC: the saved state names the TAPs of the VM
 * it was taken of, which for a new VM made from it (or a flat-bridge TAP, named after the VM) are
 * not this one's, so each is overridden.
 */
export function snapshotLoad(statePath: string, memoryPath: string, taps: readonly { tap: string }[] = []): FirecrackerRequest {
  return {
    method: 'PUT',
    path: '/snapshot/load',
    body: {
      snapshot_path: statePath,
      mem_backend: { backend_type: 'File', backend_path: memoryPath },
      resume_vm: false,
      ...(taps.length > 0 ? { network_overrides: taps.map((nic, index) => ({ iface_id: `eth${index}`, host_dev_name: nic.tap })) } : {}),
    },
  };
}

export function driveRateLimitUpdate(driveId: string, limit: RateLimit): FirecrackerRequest {
  const id = driveIdOf(driveId);
  return { method: 'PATCH', path: `/drives/${id}`, body: { drive_id: id, rate_limiter: rateLimiterOf(limit) } };
}

/**
 * Firecracker's device ids allow `[A-Za-z0-9_]` only; ours also allow `-`. The mapping is
 * one-way and stable, so every call about a drive names it the same way.
 */
export function driveIdOf(id: string): string {
  return id.replace(/-/g, '_');
}
