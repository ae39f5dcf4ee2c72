/** A key's count in its current window, and when that window ends (ms since the epoch). */
export interface WindowCount {
  count: number;
  endsAt: number;
}

/**
 * Counts events per key in fixed windows (a minute, say). At most `maxKeys` keys are kept, the
 * least recently counted going first, so a flood of keys costs bounded memory; a key pushed out
 * starts again from zero. Time comes in as an argument, so it runs on any clock.
 */
export class WindowCounter {
  private readonly windows = new Map<string, WindowCount>();

  constructor(
    private readonly windowMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Counts one more for `key` at `now`. */
  add(key: string, now: number): WindowCount {
    const current = this.peek(key, now);
    const next = { count: current.count + 1, endsAt: current.count === 0 ? now + this.windowMs : current.endsAt };
    this.windows.delete(key);
    this.windows.set(key, next);
    if (this.windows.size > this.maxKeys) this.windows.delete(this.windows.keys().next().value as string);
    return next;
  }

  /** Takes back one counted for `key` (one that turned out not to count), if its window is still open. */
  remove(key: string, now: number): void {
    const window = this.windows.get(key);
    if (window && window.endsAt > now && window.count > 0) window.count--;
  }

  /** The count of `key` in the window open at `now` (0 when none is), without counting. */
  peek(key: string, now: number): WindowCount {
    const window = this.windows.get(key);
    if (window && window.endsAt > now) return window;
    if (window) this.windows.delete(key);
    return { count: 0, endsAt: now + this.windowMs };
  }
}
