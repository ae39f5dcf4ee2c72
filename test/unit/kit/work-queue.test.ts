import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type QueueTimers, WorkQueue } from '../../../src/kit/work-queue.js';
import { captureLogger } from '../../support/capture-logger.js';

/** Lets every promise chain the last step started settle (handlers here never wait on real time). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A clock that moves only when the test says so, firing the timers that fall due on the way, in order. */
class ManualTimers implements QueueTimers {
  private nowMs = 0;
  private readonly pending = new Set<{ at: number; callback: () => void }>();

  now(): number {
    return this.nowMs;
  }

  after(delayMs: number, callback: () => void): () => void {
    const entry = { at: this.nowMs + delayMs, callback };
    this.pending.add(entry);
    return () => this.pending.delete(entry);
  }

  async advance(ms: number): Promise<void> {
    const until = this.nowMs + ms;
    for (;;) {
      const next = [...this.pending].filter((entry) => entry.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.pending.delete(next);
      this.nowMs = next.at;
      next.callback();
      await settle();
    }
    this.nowMs = until;
  }
}

/** A handler's runs, each held until the test releases it. */
function heldRuns() {
  const runs: string[] = [];
  const releases = new Map<string, () => void>();
  const running = new Map<string, number>();
  let overlapped = false;
  const handler = async (key: string) => {
    runs.push(key);
    running.set(key, (running.get(key) ?? 0) + 1);
    if ((running.get(key) ?? 0) > 1) overlapped = true;
    await new Promise<void>((resolve) => releases.set(key, resolve));
    running.set(key, (running.get(key) ?? 1) - 1);
    return undefined;
  };
  const release = async (key: string) => {
    const done = releases.get(key);
    assert.ok(done, `${key} is running`);
    releases.delete(key);
    done();
    await settle();
  };
  return { runs, handler, release, overlapped: () => overlapped };
}

describe('WorkQueue', () => {
  it('collapses a key queued several times into one run', async () => {
    const held = heldRuns();
    const queue = new WorkQueue(held.handler, captureLogger().log, { concurrency: 2 });
    queue.add('b');
    queue.add('c'); // both workers busy
    for (let i = 0; i < 3; i++) queue.add('a');
    await settle();
    assert.deepEqual(held.runs, ['b', 'c']);
    await held.release('b');
    assert.deepEqual(held.runs, ['b', 'c', 'a'], 'three adds, one run');
    await held.release('c');
    await held.release('a');
    assert.deepEqual(held.runs, ['b', 'c', 'a'], 'and no run left over');
    await queue.stop();
  });

  it('never runs one key twice at once: a key added while it runs runs once more, after', async () => {
    const held = heldRuns();
    const queue = new WorkQueue(held.handler, captureLogger().log, { concurrency: 4 });
    queue.add('a');
    await settle();
    queue.add('a');
    queue.add('a');
    await settle();
    assert.deepEqual(held.runs, ['a'], 'not beside itself, though workers are free');
    await held.release('a');
    assert.deepEqual(held.runs, ['a', 'a'], 'once more after the first run');
    await held.release('a');
    assert.deepEqual(held.runs, ['a', 'a'], 'only once more');
    assert.equal(held.overlapped(), false, 'never two runs of a key at once');
    await queue.stop();
  });

  it('retries a failing key after doubling delays up to the cap, then after the delay its handler asks for', async () => {
    const timers = new ManualTimers();
    let calls = 0;
    const logger = captureLogger();
    const queue = new WorkQueue(
      async () => {
        calls++;
        if (calls <= 4) throw new Error('boom');
        return calls === 5 ? { requeueAfterMs: 30 } : undefined;
      },
      logger.log,
      { baseBackoffMs: 10, maxBackoffMs: 25, timers },
    );
    queue.add('k');
    await settle();
    assert.equal(calls, 1);
    // Failures 1-4 wait 10, 20, 40 -> 25 (the cap), 80 -> 25; then the handler's own 30.
    for (const [delayMs, callsAfter] of [
      [10, 2],
      [20, 3],
      [25, 4],
      [25, 5],
      [30, 6],
    ] as const) {
      await timers.advance(delayMs - 1);
      assert.equal(calls, callsAfter - 1, `not run again 1 ms before ${delayMs} ms`);
      await timers.advance(1);
      assert.equal(calls, callsAfter, `run again at ${delayMs} ms`);
    }
    await timers.advance(60_000);
    assert.equal(calls, 6, 'done: a handler that answers nothing is not requeued');
    const retries = logger.lines.filter((line) => line.msg === 'reconcile failed; will retry').map((line) => line.retry_in_ms);
    assert.deepEqual(retries, [10, 20, 25, 25]);
    await queue.stop();
  });

  it('starts the backoff over after a success', async () => {
    const timers = new ManualTimers();
    const outcomes = ['fail', 'fail', 'ok', 'fail', 'ok'];
    let calls = 0;
    const queue = new WorkQueue(
      async () => {
        if (outcomes[calls++] === 'fail') throw new Error('boom');
        return undefined;
      },
      captureLogger().log,
      { baseBackoffMs: 10, timers },
    );
    queue.add('k');
    await settle();
    await timers.advance(10);
    await timers.advance(20);
    assert.equal(calls, 3, 'failed twice, then succeeded');
    queue.add('k');
    await settle();
    assert.equal(calls, 4, 'fails again');
    await timers.advance(9);
    assert.equal(calls, 4);
    await timers.advance(1);
    assert.equal(calls, 5, 'after the first delay again, not the third');
    await queue.stop();
  });

  it('keeps the earliest of several delayed adds of a key, and stop cancels what is delayed', async () => {
    const timers = new ManualTimers();
    const runs: string[] = [];
    const queue = new WorkQueue(
      async (key) => {
        runs.push(`${key}@${timers.now()}`);
        return undefined;
      },
      captureLogger().log,
      { timers },
    );
    queue.add('k', 100);
    queue.add('k', 50);
    queue.add('k', 80);
    await timers.advance(1000);
    assert.deepEqual(runs, ['k@50'], 'once, at the earliest time asked');
    queue.add('k', 10);
    await queue.stop();
    await timers.advance(1000);
    assert.deepEqual(runs, ['k@50'], 'nothing runs after stop');
  });
});
