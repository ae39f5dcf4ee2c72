import assert from 'node:assert/strict';
import { NexusError } from '../../src/kit/nexus-error.js';

/** `promise` rejects with a NexusError of `code` (and a message matching `message`); answers that error. */
export async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<NexusError> {
  let caught: NexusError | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof NexusError, `a NexusError, not ${String(error)}`);
    assert.equal(error.code, code, `code of: ${error.message}`);
    if (message) assert.match(error.message, message);
    caught = error;
    return true;
  });
  assert.ok(caught, 'it was refused');
  return caught;
}
