import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { instantOf, isStorableTimestamp, parseTimestamp } from '../../../src/kit/timestamp.js';

describe('timestamps a request may carry', () => {
  it('reads every RFC 3339 spelling of an instant that exists, offsets applied', () => {
    for (const [text, iso] of [
      ['2026-01-31T12:00:00Z', '2026-01-31T12:00:00.000Z'],
      ['2026-01-31t12:00:00z', '2026-01-31T12:00:00.000Z'],
      ['2026-01-31 12:00:00Z', '2026-01-31T12:00:00.000Z'],
      ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
      ['2026-01-31T12:00:00.123456789Z', '2026-01-31T12:00:00.123Z'],
      ['2026-01-31T12:00:00+05:30', '2026-01-31T06:30:00.000Z'],
      ['2026-01-01T00:00:00-01:00', '2026-01-01T01:00:00.000Z'],
      ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
      ['0099-06-01T00:00:00Z', '0099-06-01T00:00:00.000Z'],
      ['9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
    ]) {
      assert.equal(instantOf(text ?? '')?.toISOString(), iso, text);
    }
  });

  it('refuses what does not round-trip: leap seconds, days past the month, years outside 0001-9999 (offset applied), bad offsets, other shapes', () => {
    for (const text of [
      '2026-12-31T23:59:60Z',
      '2026-06-30T23:59:60Z',
      '2026-02-30T00:00:00Z',
      '2026-02-29T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T00:60:00Z',
      '0000-01-01T00:00:00Z',
      '0001-01-01T00:30:00+01:00',
      '9999-12-31T23:30:00-01:00',
      '10000-01-01T00:00:00Z',
      '+010000-01-01T00:00:00Z',
      '2026-01-01T00:00:00+24:00',
      '2026-01-01T00:00:00+01:60',
      '2026-01-01T00:00:00',
      '2026-01-01',
      '2026-01-01T00:00:00Z\u0000',
      'yesterday',
      '',
    ]) {
      assert.equal(instantOf(text), undefined, text);
      assert.equal(isStorableTimestamp(text), false, text);
    }
  });

  it('answers 400 validation_failed naming the field for a date-time that names no storable instant', () => {
    assert.equal(parseTimestamp('2026-01-31T12:00:00Z', 'since').toISOString(), '2026-01-31T12:00:00.000Z');
    assert.throws(
      () => parseTimestamp('2026-12-31T23:59:60Z', 'expires_at'),
      (error: unknown) =>
        error instanceof NexusError &&
        error.code === 'validation_failed' &&
        /^expires_at /.test(error.faultMessage) &&
        /leap second/.test(error.suggestion ?? ''),
    );
  });
});
