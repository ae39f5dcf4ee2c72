import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { foreignCharsetOf } from '../../../src/http/body-charset.js';

describe('foreignCharsetOf', () => {
  it('accepts no charset and UTF-8 in any case, quoted or not', () => {
    for (const type of [
      undefined,
      '',
      'application/json',
      'application/json; charset=utf-8',
      'application/json;charset=UTF-8',
      'application/json; Charset="Utf-8"',
      'application/json; foo=bar',
    ]) {
      assert.equal(foreignCharsetOf(type), undefined, String(type));
    }
  });
  it('names any other charset, an empty one included', () => {
    assert.equal(foreignCharsetOf('application/json; charset=latin1'), 'latin1');
    assert.equal(foreignCharsetOf('application/json; charset="utf-16"'), 'utf-16');
    assert.equal(foreignCharsetOf('application/json; charset=utf8'), 'utf8');
    assert.equal(foreignCharsetOf('application/json; charset=utf-8; charset=iso-8859-1'), 'iso-8859-1');
    assert.equal(foreignCharsetOf('application/json; charset='), '');
  });
});
