import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue } from '../../../src/kit/work-queue.js';
import { captureLogger } from '../../support/capture-logger.js';

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

describe('WorkQueue', () => {
  it('collapses duplicate keys and never runs one key twice at once', async () => {
    let running = 0;
    let maxRunning = 0;
    const runs: string[] = [];
    const queue = new WorkQueue(async (key) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs.push(key);
      await tick(20);
      running--;
      return undefined;
    }, captureLogger().log, { concurrency: 4 });
    queue.add('a');
    queue.add('a');
    queue.add('a'); // queued twice while waiting: collapses
    await tick();
    queue.add('a'); // added while running: runs once more afterwards
    await tick(80);
    assert.deepEqual(runs, ['a', 'a']);
    assert.equal(maxRunning, 1);
    await queue.stop();
  });

  it('retries a failing key with growing delays, and honours requeueAfterMs', async () => {
    const times: number[] = [];
    let calls = 0;
    const queue = new WorkQueue(async () => {
      times.push(Date.now());
      calls++;
      if (calls <= 3) throw new Error('boom');
      return calls === 4 ? { requeueAfterMs: 30 } : undefined;
    }, captureLogger().log, { baseBackoffMs: 10, maxBackoffMs: 1000 });
    queue.add('k');
    await tick(200);
    assert.equal(calls, 5);
    const gaps = times.slice(1).map((time, i) => time - (times[i] ?? 0));
    assert.ok((gaps[1] ?? 0) >= (gaps[0] ?? 0), `backoff grows: ${gaps.join(', ')}`);
    assert.ok((gaps[3] ?? 0) >= 25, 'requeued after the delay asked for');
    await queue.stop();
  });
});
