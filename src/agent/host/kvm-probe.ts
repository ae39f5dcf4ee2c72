import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface KvmProbeResult {
  usable: boolean;
  reason?: string;
}

/** The probe's exit port and value: isa-debug-exit makes QEMU exit with (value << 1) | 1. */
const EXIT_PORT = 0xf4;
const EXIT_VALUE = 0x31;
export const KVM_PROBE_EXIT_CODE = (EXIT_VALUE << 1) | 1;
const LOOP_ITERATIONS = 100_000_000;

/**
 * A 64 KiB firmware image that counts down 100 million times in real mode and then writes to
 * the debug-exit port. Hardware KVM runs the loop in well under a second (TCG in about 0.3 s);
 * a KVM that opens and creates VMs but cannot really run guests (nested virtualization missing,
 * as on our CI machines) never finishes it.
 */
export function kvmProbeFirmware(): Buffer {
  const image = Buffer.alloc(64 * 1024, 0xf4); // hlt everywhere
  const n = LOOP_ITERATIONS;
  const code = [
    0x66,
    0xb9,
    n & 0xff,
    (n >> 8) & 0xff,
    (n >> 16) & 0xff,
    (n >>> 24) & 0xff, // mov ecx, n
    0x66,
    0x49, //                                                               dec ecx
    0x75,
    0xfc, //                                                               jnz dec
    0xb0,
    EXIT_VALUE, //                                                         mov al, EXIT_VALUE
    0xe6,
    EXIT_PORT, //                                                          out EXIT_PORT, al
    0xf4, //                                                                     hlt
  ];
  Buffer.from(code).copy(image, 0);
  // The reset vector, 16 bytes below the top of the image: far jump to F000:0000, the code above.
  Buffer.from([0xea, 0x00, 0x00, 0x00, 0xf0]).copy(image, image.length - 16);
  return image;
}

/** QEMU arguments that run the probe firmware; it exits with {@link KVM_PROBE_EXIT_CODE} when done. */
export function kvmProbeArgs(firmware: string, accel: 'kvm' | 'tcg'): string[] {
  return [
    '-accel',
    accel,
    '-M',
    'microvm,x-option-roms=off,rtc=off,acpi=off',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-m',
    '16',
    '-bios',
    firmware,
    '-device',
    `isa-debug-exit,iobase=${EXIT_PORT},iosize=0x04`,
  ];
}

/**
 * Whether KVM actually runs guests here: opening /dev/kvm is not enough, so a vCPU must run the
 * probe firmware to completion within `timeoutMs`.
 */
export async function probeKvm(qemuBinary: string, timeoutMs = 3000): Promise<KvmProbeResult> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { usable: false, reason: '/dev/kvm is missing or not accessible' };
  }
  const dir = await mkdtemp(join(tmpdir(), 'nexus-kvm-probe-'));
  try {
    const firmware = join(dir, 'probe.bin');
    await writeFile(firmware, kvmProbeFirmware());
    try {
      await run(qemuBinary, kvmProbeArgs(firmware, 'kvm'), { timeout: timeoutMs, killSignal: 'SIGKILL' });
      return { usable: false, reason: 'the KVM probe guest exited without reporting' };
    } catch (error) {
      const failure = error as { code?: number | string; killed?: boolean; stderr?: string };
      if (failure.code === KVM_PROBE_EXIT_CODE) return { usable: true };
      if (failure.code === 'ENOENT') return { usable: false, reason: `${qemuBinary} not found: cannot probe KVM` };
      if (failure.killed) {
        return { usable: false, reason: `/dev/kvm opens, but a KVM vCPU did not finish a probe loop within ${timeoutMs} ms (no nested virtualization?)` };
      }
      const detail = (failure.stderr ?? '').trim().split('\n').pop() ?? '';
      return { usable: false, reason: `the KVM probe failed: ${detail || `exit ${String(failure.code)}`}` };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
