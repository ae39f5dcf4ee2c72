import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UndoStack } from '../../../src/kit/undo-stack.js';
import { captureLogger } from '../../support/capture-logger.js';

describe('UndoStack', () => {
  it('runs undos last-first, once, and logs and answers the ones that fail without stopping', async () => {
    const { log, lines } = captureLogger();
    const ran: string[] = [];
    const undo = new UndoStack(log);
    undo.push('first', () => void ran.push('first'));
    undo.push('broken', () => {
      throw new Error('boom');
    });
    undo.push('last', async () => void ran.push('last'));
    const [failures, again] = await Promise.all([undo.unwindReporting(), undo.unwindReporting()]);
    await undo.unwind();
    assert.deepEqual(ran, ['last', 'first']);
    assert.equal(lines.filter((line) => line.undo === 'broken').length, 1);
    assert.deepEqual(
      failures?.map((failure) => [failure.label, (failure.error as Error).message]),
      [['broken', 'boom']],
      'the failed undo is answered, with its error',
    );
    assert.equal(again, failures, 'a second call answers the same run');
  });
});
