import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WindowCounter } from '../../../src/kit/window-counter.js';

describe('WindowCounter', () => {
  it('counts per key within a window, and starts again from zero when the window is over', () => {
    const counter = new WindowCounter(60_000);
    assert.deepEqual(counter.add('a', 1_000), { count: 1, endsAt: 61_000 });
    assert.deepEqual(counter.add('a', 30_000), { count: 2, endsAt: 61_000 });
    assert.deepEqual(counter.add('b', 30_000), { count: 1, endsAt: 90_000 });
    assert.deepEqual(counter.peek('a', 60_999), { count: 2, endsAt: 61_000 });
    assert.deepEqual(counter.add('a', 61_000), { count: 1, endsAt: 121_000 });
  });
  it('takes back a count within its window only', () => {
    const counter = new WindowCounter(1_000);
    counter.add('a', 0);
    counter.add('a', 10);
    counter.remove('a', 20);
    assert.equal(counter.peek('a', 30).count, 1);
    counter.remove('a', 2_000);
    assert.equal(counter.peek('a', 2_000).count, 0);
    counter.remove('never', 0);
    assert.equal(counter.peek('never', 0).count, 0);
  });
  it('keeps at most maxKeys keys, the least recently counted going first', () => {
    const counter = new WindowCounter(60_000, 2);
    counter.add('a', 0);
    counter.add('b', 0);
    counter.add('a', 1);
    counter.add('c', 2);
    assert.equal(counter.peek('b', 3).count, 0, 'b, the least recently counted, went');
    assert.equal(counter.peek('a', 3).count, 2);
    assert.equal(counter.peek('c', 3).count, 1);
  });
});
