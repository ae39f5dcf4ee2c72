import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Step, runPlan } from '../../../src/agent/plans/plan.js';
import { captureLogger } from '../../support/capture-logger.js';

/** A step over a set of "made" things: needed while its thing is not made, undone by unmaking it. */
function thing(world: Set<string>, name: string, journal: string[], options: { fails?: boolean; undoFails?: boolean } = {}): Step {
  return {
    name,
    isNeeded: async () => !world.has(name),
    do: async () => {
      journal.push(`do ${name}`);
      if (options.fails) throw new Error(`${name} failed`);
      world.add(name);
    },
    undo: async () => {
      journal.push(`undo ${name}`);
      if (options.undoFails) throw new Error(`undoing ${name} failed`);
      world.delete(name);
    },
  };
}

describe('runPlan', () => {
  it('runs the needed steps in order and says which it did', async () => {
    const world = new Set<string>();
    const journal: string[] = [];
    const run = await runPlan('test', [thing(world, 'a', journal), thing(world, 'b', journal), thing(world, 'c', journal)], captureLogger().log);
    assert.deepEqual(journal, ['do a', 'do b', 'do c']);
    assert.deepEqual(run, { done: ['a', 'b', 'c'], skipped: [] });
    assert.deepEqual([...world], ['a', 'b', 'c']);
  });

  it('a step that fails half-way undoes the steps before it, last first, and leaves the world as it was', async () => {
    const world = new Set<string>(['before']);
    const journal: string[] = [];
    await assert.rejects(
      runPlan(
        'test',
        [thing(world, 'a', journal), thing(world, 'b', journal), thing(world, 'c', journal, { fails: true }), thing(world, 'd', journal)],
        captureLogger().log,
      ),
      /c failed/,
    );
    assert.deepEqual(journal, ['do a', 'do b', 'do c', 'undo b', 'undo a'], 'd never ran; b and a were undone, last first; c (which failed) was not undone');
    assert.deepEqual([...world], ['before']);
  });

  it('undoes only what this run did: a step found done is not undone when a later one fails', async () => {
    const world = new Set<string>(['a']);
    const journal: string[] = [];
    await assert.rejects(
      runPlan('test', [thing(world, 'a', journal), thing(world, 'b', journal), thing(world, 'c', journal, { fails: true })], captureLogger().log),
    );
    assert.deepEqual(journal, ['do b', 'do c', 'undo b']);
    assert.deepEqual([...world], ['a'], 'a was there before the plan and stays');
  });

  it('a retried plan skips the steps whose work is done', async () => {
    const world = new Set<string>();
    const journal: string[] = [];
    await runPlan('first', [thing(world, 'a', journal), thing(world, 'b', journal)], captureLogger().log);
    journal.length = 0;
    const run = await runPlan('retry', [thing(world, 'a', journal), thing(world, 'b', journal), thing(world, 'c', journal)], captureLogger().log);
    assert.deepEqual(journal, ['do c']);
    assert.deepEqual(run, { done: ['c'], skipped: ['a', 'b'] });
  });

  it('an undo that fails is logged and the others still run; the step failure is what is thrown', async () => {
    const world = new Set<string>();
    const journal: string[] = [];
    const logger = captureLogger();
    await assert.rejects(
      runPlan('test', [thing(world, 'a', journal), thing(world, 'b', journal, { undoFails: true }), thing(world, 'c', journal, { fails: true })], logger.log),
      /c failed/,
    );
    assert.deepEqual(journal, ['do a', 'do b', 'do c', 'undo b', 'undo a']);
    assert.ok(
      logger.lines.some((line) => line.undo === 'b'),
      'the failed undo is logged with its step',
    );
    assert.deepEqual([...world], ['b'], 'only what could not be undone is left');
  });

  it('makes a step given as a function when its turn comes, so it can use what earlier steps did', async () => {
    const journal: string[] = [];
    let made = '';
    await runPlan(
      'test',
      [
        { name: 'make', isNeeded: async () => true, do: async () => void (made = 'value') },
        () => ({ name: `use ${made}`, isNeeded: async () => true, do: async () => void journal.push(`used ${made}`) }),
        () => undefined,
      ],
      captureLogger().log,
    );
    assert.deepEqual(journal, ['used value']);
  });
});
