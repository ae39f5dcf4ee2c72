import assert from 'node:assert/strict';
import { mkdirSync, openSync, readFileSync, statSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { VmLogKeeper } from '../../../src/agent/host/vm-log-keeper.js';
import { vmLayout } from '../../../src/contracts/vm-layout.js';
import { captureLogger } from '../../support/capture-logger.js';
import { testVmId } from '../../support/net-names.js';
import { tempDir } from '../../support/temp-dir.js';

describe('VmLogKeeper', () => {
  const dir = tempDir('nexus-console-');
  after(() => dir.remove());

  it('cuts a log over its cap back to empty, keeping its last quarter; an appending writer goes on at the start', async () => {
    const [big, small] = [testVmId(), testVmId()];
    for (const id of [big, small]) mkdirSync(vmLayout(dir.path, id).logsDir, { recursive: true });
    const bigLog = vmLayout(dir.path, big).consoleLog;
    const smallLog = vmLayout(dir.path, small).consoleLog;
    writeFileSync(smallLog, 'quiet guest\n');
    // The VMM's view: an O_APPEND descriptor it keeps writing through.
    const vmm = openSync(bigLog, 'a');
    try {
      for (let i = 0; i < 2000; i++) writeSync(vmm, `line ${String(i).padStart(5, '0')} ${'x'.repeat(100)}\n`);
      const keeper = new VmLogKeeper(dir.path, 65_536, captureLogger('keeper').log);
      assert.deepEqual(await keeper.sweep(), [bigLog]);
      assert.equal(statSync(bigLog).size, 0);
      const kept = readFileSync(`${bigLog}.1`, 'utf8');
      assert.equal(kept.length, 16_384, 'a quarter of the cap');
      assert.ok(kept.endsWith(`line 01999 ${'x'.repeat(100)}\n`), 'the newest lines are the ones kept');
      writeSync(vmm, 'after the cut\n');
      assert.equal(readFileSync(bigLog, 'utf8'), 'after the cut\n', 'no hole: the writer appends at the new end');
      assert.equal(readFileSync(smallLog, 'utf8'), 'quiet guest\n', 'a log under the cap is left alone');
      assert.deepEqual(await keeper.sweep(), []);

      // Firecracker's own log: written at its offset, so after a cut the file is sparse; the cap counts blocks.
      const fcLog = join(vmLayout(dir.path, small).logsDir, 'firecracker.log');
      const firecracker = openSync(fcLog, 'w');
      try {
        writeSync(firecracker, Buffer.alloc(100_000, 'y'));
        assert.deepEqual(await keeper.sweep(), [fcLog]);
        writeSync(firecracker, 'next line\n');
        assert.ok(statSync(fcLog).size > 100_000, 'the writer goes on at its offset');
        assert.deepEqual(await keeper.sweep(), [], 'a sparse file under the cap in blocks is left alone');
      } finally {
        closeSync(firecracker);
      }
    } finally {
      closeSync(vmm);
    }
  });
});
