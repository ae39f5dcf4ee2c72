import { readFile } from 'node:fs/promises';
import { runHostTool } from './host-tool.js';

let measured: Promise<number | undefined> | undefined;

/**
 * This host's TSC rate in kHz, for a guest's `tsc_early_khz=` (see `guestKernelCmdline`), or
 * undefined when it cannot be told (then leave the parameter out). Under TCG the guest's TSC is
 * the host's. Read once per process: the rate is fixed for the life of the boot.
 *
 * Sources, best first: the kernel's own calibration in its log ("tsc: Refined TSC clocksource
 * calibration", then "tsc: Detected … MHz processor"), which needs permission to read the log and
 * may have rotated out of it; then /proc/cpuinfo's "cpu MHz", which equals the TSC rate on
 * virtual machines and constant-TSC CPUs at their base clock. A wrong value only skews the guest's
 * clock; a missing one risks hung boots under TCG.
 */
export function hostTscKhz(): Promise<number | undefined> {
  measured ??= measure();
  return measured;
}

async function measure(): Promise<number | undefined> {
  try {
    const { stdout } = await runHostTool('dmesg', [], { doing: 'reading the kernel log for the TSC rate' });
    const khz = parseDmesgTscKhz(stdout);
    if (khz !== undefined) return khz;
  } catch {
    // No permission (dmesg_restrict) or no dmesg: fall back to /proc/cpuinfo.
  }
  try {
    return parseCpuinfoKhz(await readFile('/proc/cpuinfo', 'utf8'));
  } catch {
    return undefined;
  }
}

/** The TSC rate in kHz from kernel log text: the refined calibration when present, else the detected one. */
export function parseDmesgTscKhz(log: string): number | undefined {
  const refined = /tsc: Refined TSC clocksource calibration: (\d+(?:\.\d+)?) MHz/.exec(log);
  const detected = /tsc: Detected (\d+(?:\.\d+)?) MHz (?:processor|TSC)/.exec(log);
  return khzOf((refined ?? detected)?.[1]);
}

/** The first CPU's "cpu MHz" from /proc/cpuinfo, in kHz. */
export function parseCpuinfoKhz(cpuinfo: string): number | undefined {
  return khzOf(/^cpu MHz\s*:\s*(\d+(?:\.\d+)?)\s*$/m.exec(cpuinfo)?.[1]);
}

function khzOf(mhz: string | undefined): number | undefined {
  if (mhz === undefined) return undefined;
  const khz = Math.round(Number(mhz) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : undefined;
}
