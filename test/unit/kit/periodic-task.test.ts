import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { PeriodicTask } from '../../../src/kit/periodic-task.js';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('PeriodicTask', () => {
  it('hands a failed run to onError and keeps running (a database away must not end the loop, or the process)', async () => {
    let runs = 0;
    const errors: string[] = [];
    const task = new PeriodicTask(
      10,
      async () => {
        runs++;
        throw new Error(`run ${runs} failed`);
      },
      (error) => errors.push((error as Error).message),
    );
    task.start(true);
    for (let waited = 0; runs < 3 && waited < 2000; waited += 10) await tick(10);
    await task.stop();
    assert.ok(runs >= 3, `the loop kept running after failures (${runs} runs)`);
    assert.deepEqual(
      errors,
      Array.from({ length: runs }, (_, i) => `run ${i + 1} failed`),
    );
  });

  it('without onError, a failed run is a process warning, not an unhandled rejection', async () => {
    const warned = once(process, 'warning');
    const task = new PeriodicTask(10_000, async () => {
      throw new Error('no database');
    });
    task.start(true);
    const [warning] = (await warned) as [Error];
    await task.stop();
    assert.match(warning.message, /a periodic task failed: no database/);
  });
});
