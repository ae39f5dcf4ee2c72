import type { Logger } from 'pino';
import { messageOf } from './nexus-error.js';

/** What a reconcile answers: nothing (done until woken) or when to look again. */
export type ReconcileResult = { requeueAfterMs: number } | undefined;

/** The clock and timer the queue waits with. */
export interface QueueTimers {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` once after `delayMs`, without keeping the process alive; answers a cancel. */
  after(delayMs: number, callback: () => void): () => void;
}

/** The system's clock and `setTimeout`, unref'd. */
export const systemQueueTimers: QueueTimers = {
  now: () => Date.now(),
  after: (delayMs, callback) => {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface WorkQueueOptions {
  /** Keys handled at once. Default 4. */
  concurrency?: number;
  /** First retry delay after a failure; doubles per consecutive failure. Default 200 ms. */
  baseBackoffMs?: number;
  /** Longest retry delay. Default 30 s. */
  maxBackoffMs?: number;
  /** Default the system's; tests pass a clock they move, so delays are checked without waiting. */
  timers?: QueueTimers;
}

/**
 * The reconcile loop's queue, in the manner of controller-runtime: a key is queued at most once,
 * never handled by two workers at once (a key added while it is being handled is handled again
 * after), retried with capped exponential backoff when its handler throws, and re-added after the
 * delay its handler asks for. The handler reads the world for its key; it is never told why.
 */
export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly delayed = new Map<string, { at: number; cancel: () => void }>();
  private readonly failures = new Map<string, number>();
  private readonly running = new Set<Promise<void>>();
  private stopped = false;
  private readonly concurrency: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly timers: QueueTimers;

  constructor(
    private readonly handler: (key: string) => Promise<ReconcileResult>,
    private readonly log: Logger,
    options: WorkQueueOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 4;
    this.baseBackoffMs = options.baseBackoffMs ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.timers = options.timers ?? systemQueueTimers;
  }

  /** Queues the key now, or after `delayMs` (an earlier request wins over a later one). */
  add(key: string, delayMs = 0): void {
    if (this.stopped) return;
    if (delayMs > 0) {
      const at = this.timers.now() + delayMs;
      const existing = this.delayed.get(key);
      if (existing && existing.at <= at) return;
      existing?.cancel();
      const cancel = this.timers.after(delayMs, () => {
        this.delayed.delete(key);
        this.add(key);
      });
      this.delayed.set(key, { at, cancel });
      return;
    }
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.ready.push(key);
    this.pump();
  }

  /** How many keys wait to be handled. */
  get depth(): number {
    return this.ready.length;
  }

  /** Stops taking work and waits for the handlers in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const { cancel } of this.delayed.values()) cancel();
    this.delayed.clear();
    this.ready.length = 0;
    await Promise.all(this.running);
  }

  private pump(): void {
    while (!this.stopped && this.active.size < this.concurrency && this.ready.length > 0) {
      const key = this.ready.shift() as string;
      this.queued.delete(key);
      this.active.add(key);
      const run = this.handle(key).finally(() => {
        this.running.delete(run);
        this.active.delete(key);
        if (this.dirty.delete(key)) this.add(key);
        this.pump();
      });
      this.running.add(run);
    }
  }

  private async handle(key: string): Promise<void> {
    try {
      const result = await this.handler(key);
      this.failures.delete(key);
      if (result) this.add(key, result.requeueAfterMs);
    } catch (error) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      const delayMs = Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** (failures - 1));
      this.log.warn({ key, failures, retry_in_ms: delayMs, err: messageOf(error) }, 'reconcile failed; will retry');
      this.add(key, Math.max(1, delayMs));
    }
  }
}
