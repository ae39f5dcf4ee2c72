import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { CAPACITY_NOTE_MAX_LENGTH, DriverAvailability } from '../../../src/contracts/agent-api.js';
import { probeNoteOf } from '../../../src/agent/host/capacity-probe.js';

describe('probe notes in a capacity report', () => {
  const fits = (note: string) => new Ajv({ strict: false }).validate(DriverAvailability, { name: 'qemu', available: false, reason: note });

  it('keep a plain note as it is', () => {
    assert.equal(probeNoteOf('qemu-system-x86_64 not found'), 'qemu-system-x86_64 not found');
  });

  it('drop NUL and unpaired surrogates, which the manager refuses', () => {
    const note = probeNoteOf('exit 1: \u0000garbled \ud800output 😀');
    assert.equal(note, 'exit 1: garbled output 😀');
    assert.equal(fits(note), true);
    assert.equal(fits('exit 1: \u0000garbled'), false, 'the manager refuses the raw note');
  });

  it('cut a long note to the contract, never inside a surrogate pair', () => {
    for (const long of ['x'.repeat(5000), '😀'.repeat(3000), `x${'😀'.repeat(3000)}`]) {
      const note = probeNoteOf(long);
      assert.ok(note.length <= CAPACITY_NOTE_MAX_LENGTH, `${note.length} characters`);
      assert.ok(note.endsWith('…'), 'says it was cut');
      assert.equal(fits(note), true, 'the manager accepts it');
      assert.equal(fits(long), false, 'the manager refuses the raw note');
    }
  });
});
