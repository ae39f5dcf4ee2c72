import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { KVM_PROBE_EXIT_CODE, kvmProbeArgs, kvmProbeFirmware } from '../../../src/agent/host/kvm-probe.js';
import { tempDir } from '../../support/temp-dir.js';

describe('KVM probe firmware', () => {
  it('is 64 KiB with a far jump at the reset vector', () => {
    const image = kvmProbeFirmware();
    assert.equal(image.length, 65536);
    assert.deepEqual([...image.subarray(65536 - 16, 65536 - 11)], [0xea, 0x00, 0x00, 0x00, 0xf0]);
  });

  it('runs to its exit port under TCG (so a KVM that finishes it really runs guests)', async () => {
    const dir = tempDir('nexus-probe-');
    try {
      const firmware = join(dir.path, 'probe.bin');
      writeFileSync(firmware, kvmProbeFirmware());
      const failure = await promisify(execFile)('qemu-system-x86_64', kvmProbeArgs(firmware, 'tcg'), { timeout: 20_000, killSignal: 'SIGKILL' }).then(
        () => ({ code: 0 }),
        (error: { code?: number }) => error,
      );
      assert.equal(failure.code, KVM_PROBE_EXIT_CODE);
    } finally {
      dir.remove();
    }
  });
});
