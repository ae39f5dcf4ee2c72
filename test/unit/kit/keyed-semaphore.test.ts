import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyedSemaphore } from '../../../src/kit/keyed-semaphore.js';

describe('KeyedSemaphore', () => {
  it('runs at most `limit` tasks per key at once, other keys freely, and all of them in the end', async () => {
    const semaphore = new KeyedSemaphore(2);
    const running = new Map<string, number>();
    const peak = new Map<string, number>();
    const task = (key: string) =>
      semaphore.run(key, async () => {
        running.set(key, (running.get(key) ?? 0) + 1);
        peak.set(key, Math.max(peak.get(key) ?? 0, running.get(key) ?? 0));
        await new Promise((resolve) => setTimeout(resolve, 5));
        running.set(key, (running.get(key) ?? 1) - 1);
        return key;
      });
    const results = await Promise.all([...Array.from({ length: 6 }, () => task('a')), ...Array.from({ length: 3 }, () => task('b'))]);
    assert.equal(results.length, 9);
    assert.equal(peak.get('a'), 2);
    assert.equal(peak.get('b'), 2);
    await assert.rejects(
      semaphore.run('a', async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(await semaphore.run('a', async () => 'still works'), 'still works');
  });
});
