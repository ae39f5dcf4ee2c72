import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { decodeCursor, encodeCursor } from '../../../src/kit/page-cursor.js';
import { isStorableTimestamp } from '../../../src/kit/timestamp.js';

const POSITION = [(at: string) => isStorableTimestamp(at), (id: string) => /^[0-9a-f-]{36}$/.test(id)];
const ID = '0b7c1e52-8d4a-4f0e-9c61-2f3a5b6c7d8e';
const refused = (error: unknown) =>
  error instanceof NexusError && error.code === 'validation_failed' && /cursor is not one this API gave out/.test(error.faultMessage);

describe('page cursors', () => {
  it('gives back the fields it was made of', () => {
    assert.deepEqual(decodeCursor(encodeCursor(['2026-01-31T12:00:00.123456Z', ID]), POSITION), ['2026-01-31T12:00:00.123456Z', ID]);
    assert.deepEqual(decodeCursor(encodeCursor(['vm-7']), [(name) => /^[a-z0-9-]+$/.test(name)]), ['vm-7']);
  });

  it('refuses (400) a cursor of another shape, with another number of fields, or with a date the database cannot read', () => {
    for (const fields of [
      ['2026-02-30T00:00:00.000000Z', ID],
      ['0000-01-01T00:00:00.000000Z', ID],
      ['2026-12-31T23:59:60.000000Z', ID],
      ['yesterday', ID],
      ['2026-01-31T12:00:00Z'],
      ['2026-01-31T12:00:00Z', ID, 'more'],
      ['2026-01-31T12:00:00Z', 'me'],
    ]) {
      assert.throws(() => decodeCursor(encodeCursor(fields), POSITION), refused, fields.join('|'));
    }
    assert.throws(() => decodeCursor('not base64 at all!', POSITION), refused);
  });
});
