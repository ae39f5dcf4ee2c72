import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyedMutex } from '../../../src/kit/keyed-mutex.js';

describe('KeyedMutex', () => {
  it('runs one key at a time in order, other keys alongside, and survives a failure', async () => {
    const mutex = new KeyedMutex();
    const events: string[] = [];
    const step = (key: string, name: string, fail = false) =>
      mutex.run(key, async () => {
        events.push(`${name}:start`);
        await new Promise((resolve) => setImmediate(resolve));
        events.push(`${name}:end`);
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([step('a', 'a1', true), step('a', 'a2'), step('b', 'b1')]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'fulfilled', 'fulfilled'],
    );
    assert.ok(events.indexOf('a1:end') < events.indexOf('a2:start'), 'a2 waits for a1');
    assert.ok(events.indexOf('b1:start') < events.indexOf('a1:end'), 'b1 does not wait for a');
  });
});
