import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_ID, idInRange, idRangeSize, lowestFreeId, parseIdRange } from '../../../src/agent/domain/id-range.js';

describe('id ranges (jailed VM uids)', () => {
  it('parses first-last, inclusive, and refuses root, reversed ends, (uid_t) -1 and anything else', () => {
    assert.deepEqual(parseIdRange('100000-165535'), { first: 100_000, last: 165_535 });
    assert.deepEqual(parseIdRange('5-5'), { first: 5, last: 5 });
    assert.deepEqual(parseIdRange(`1-${MAX_ID}`), { first: 1, last: 4_294_967_294 });
    for (const text of [
      '',
      '5',
      '0-5',
      '00-5',
      '5-0',
      '6-5',
      `1-${MAX_ID + 1}`,
      '1-99999999999',
      '-1-5',
      '1e3-2e3',
      '1.5-3',
      ' 1-5',
      '1-5 ',
      '1..5',
      '1-5-9',
    ]) {
      assert.equal(parseIdRange(text), undefined, `'${text}' is not a range`);
    }
    assert.equal(idRangeSize({ first: 10, last: 19 }), 10);
    assert.equal(idInRange({ first: 10, last: 19 }, 10), true);
    assert.equal(idInRange({ first: 10, last: 19 }, 19), true);
    assert.equal(idInRange({ first: 10, last: 19 }, 20), false);
    assert.equal(idInRange({ first: 10, last: 19 }, 9), false);
    assert.equal(idInRange({ first: 10, last: 19 }, 12.5), false);
  });

  it('picks the lowest id not in use, fills holes first, ignores ids outside the range, and says when none is left', () => {
    const range = { first: 100, last: 103 };
    assert.equal(lowestFreeId(range, new Set()), 100);
    assert.equal(lowestFreeId(range, new Set([100, 101])), 102);
    assert.equal(lowestFreeId(range, new Set([100, 102, 103])), 101, 'a freed id in the middle is taken again first');
    assert.equal(lowestFreeId(range, new Set([5, 99, 104, 100])), 101, 'ids outside the range hold nothing in it');
    assert.equal(lowestFreeId(range, new Set([100, 101, 102, 103])), undefined, 'exhausted');
    assert.equal(lowestFreeId({ first: 7, last: 7 }, new Set([7])), undefined);
    assert.equal(lowestFreeId({ first: 1, last: MAX_ID }, new Set([1, 2, 3])), 4, 'a huge range is not walked past the first free id');
  });
});
