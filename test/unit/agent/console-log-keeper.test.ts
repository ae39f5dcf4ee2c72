import assert from 'node:assert/strict';
import { mkdirSync, openSync, readFileSync, statSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { ConsoleLogKeeper } from '../../../src/agent/host/console-log-keeper.js';
import { vmLayout } from '../../../src/contracts/vm-layout.js';
import { captureLogger } from '../../support/capture-logger.js';
import { testVmId } from '../../support/net-names.js';
import { tempDir } from '../../support/temp-dir.js';

describe('ConsoleLogKeeper', () => {
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
      const keeper = new ConsoleLogKeeper(dir.path, 65_536, captureLogger('keeper').log);
      assert.deepEqual(await keeper.sweep(), [big]);
      assert.equal(statSync(bigLog).size, 0);
      const kept = readFileSync(`${bigLog}.1`, 'utf8');
      assert.equal(kept.length, 16_384, 'a quarter of the cap');
      assert.ok(kept.endsWith(`line 01999 ${'x'.repeat(100)}\n`), 'the newest lines are the ones kept');
      writeSync(vmm, 'after the cut\n');
      assert.equal(readFileSync(bigLog, 'utf8'), 'after the cut\n', 'no hole: the writer appends at the new end');
      assert.equal(readFileSync(smallLog, 'utf8'), 'quiet guest\n', 'a log under the cap is left alone');
      assert.deepEqual(await keeper.sweep(), []);
    } finally {
      closeSync(vmm);
    }
  });
});
