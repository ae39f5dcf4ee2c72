/**
 * The garbage collector's rule: a host leftover may be removed only once it has been seen in
 * every sweep for at least the grace period. A sweep that misses it starts its grace over, so
 * something that comes and goes (a VM folder being made, a TAP being remade) is never collected
 * on the strength of two sightings far apart. Pure: times come in as arguments.
 */
export class OrphanSightings {
  private readonly firstSeenMs = new Map<string, number>();
  private seenThisSweep = new Set<string>();

  /** `graceMs`: how long a leftover must have been seen, without a gap, before it is due. */
  constructor(private readonly graceMs: number) {}

  /**
   * Records that the leftover `key` was seen at `nowMs`, and answers whether it is due now: seen
   * continuously since at least `graceMs` ago. A first sighting is due only with a grace of 0.
   */
  sight(key: string, nowMs: number): boolean {
    this.seenThisSweep.add(key);
    const first = this.firstSeenMs.get(key) ?? nowMs;
    this.firstSeenMs.set(key, first);
    return nowMs - first >= this.graceMs;
  }

  /** Ends a sweep: whatever it did not see is forgotten, so its grace starts over if it comes back. */
  endSweep(): void {
    for (const key of this.firstSeenMs.keys()) if (!this.seenThisSweep.has(key)) this.firstSeenMs.delete(key);
    this.seenThisSweep = new Set();
  }

  /** Forgets a leftover that was removed: one of the same name later is a new leftover. */
  forget(key: string): void {
    this.firstSeenMs.delete(key);
  }
}
