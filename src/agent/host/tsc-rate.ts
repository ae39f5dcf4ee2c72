import { readFile } from 'node:fs/promises';

/**
 * The host's TSC rate in kHz, which a TCG guest must be told (`tsc_early_khz`). Under TCG the
 * guest's TSC is the host's. Read from /proc/cpuinfo's "cpu MHz"; undefined where it is absent.
 * A slightly wrong value only skews the guest clock.
 */
export async function hostTscKhz(): Promise<number | undefined> {
  try {
    const match = /^cpu MHz\s*:\s*([\d.]+)/m.exec(await readFile('/proc/cpuinfo', 'utf8'));
    return match ? Math.round(Number(match[1]) * 1000) : undefined;
  } catch {
    return undefined;
  }
}
