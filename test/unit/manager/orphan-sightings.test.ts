import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OrphanSightings } from '../../../src/manager/domain/orphan-sightings.js';

const GRACE_MS = 60_000;

/** Sees `key` in one sweep at `atMs` and ends the sweep; answers whether it was due. */
function sweep(sightings: OrphanSightings, atMs: number, keys: string[] = ['tap']): boolean[] {
  const due = keys.map((key) => sightings.sight(key, atMs));
  sightings.endSweep();
  return due;
}

describe('OrphanSightings: a leftover is due only once seen, without a gap, for the whole grace', () => {
  it('is not due when first seen, nor 1 ms before the grace ends; due at the grace and after', () => {
    const sightings = new OrphanSightings(GRACE_MS);
    assert.deepEqual(sweep(sightings, 1_000), [false], 'first sighting');
    assert.deepEqual(sweep(sightings, 1_000 + GRACE_MS - 1), [false], '1 ms short of the grace');
    assert.deepEqual(sweep(sightings, 1_000 + GRACE_MS), [true], 'exactly the grace');
    assert.deepEqual(sweep(sightings, 1_000 + GRACE_MS + 1), [true], 'past the grace');
  });

  it('counts from the first sighting, not the latest', () => {
    const sightings = new OrphanSightings(GRACE_MS);
    for (let at = 0; at < GRACE_MS; at += 15_000) assert.deepEqual(sweep(sightings, at), [false], `seen at ${at} ms`);
    assert.deepEqual(sweep(sightings, GRACE_MS), [true]);
  });

  it('starts the grace over after a sweep that did not see it', () => {
    const sightings = new OrphanSightings(GRACE_MS);
    sweep(sightings, 0);
    sweep(sightings, GRACE_MS - 1);
    sweep(sightings, GRACE_MS - 1, ['something-else']);
    assert.deepEqual(sweep(sightings, GRACE_MS), [false], 'back after a gap: first seen again');
    assert.deepEqual(sweep(sightings, 2 * GRACE_MS - 1), [false]);
    assert.deepEqual(sweep(sightings, 2 * GRACE_MS), [true]);
  });

  it('keeps each leftover on its own clock', () => {
    const sightings = new OrphanSightings(GRACE_MS);
    sweep(sightings, 0, ['old']);
    assert.deepEqual(sweep(sightings, GRACE_MS, ['old', 'new']), [true, false]);
    assert.deepEqual(sweep(sightings, 2 * GRACE_MS - 1, ['old', 'new']), [true, false]);
    assert.deepEqual(sweep(sightings, 2 * GRACE_MS, ['old', 'new']), [true, true]);
  });

  it('treats a removed leftover that comes back under the same name as new', () => {
    const sightings = new OrphanSightings(GRACE_MS);
    sweep(sightings, 0);
    assert.deepEqual(sweep(sightings, GRACE_MS), [true]);
    sightings.forget('tap');
    assert.deepEqual(sweep(sightings, GRACE_MS + 1), [false]);
  });

  it('with a grace of 0, a first sighting is due at once', () => {
    assert.deepEqual(sweep(new OrphanSightings(0), 5), [true]);
  });
});
