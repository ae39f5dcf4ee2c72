import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bytes } from '../../../src/cli/output/print.js';

describe('bytes', () => {
  it('says a size in the largest unit that keeps it at 1 or more', () => {
    assert.equal(bytes(0), '0 B');
    assert.equal(bytes(1023), '1023 B', 'under a KiB in bytes');
    assert.equal(bytes(1024), '1.0 KiB');
    assert.equal(bytes(130.25 * 2 ** 20), '130.3 MiB');
    assert.equal(bytes(1.5 * 2 ** 30), '1.5 GiB');
  });
});
