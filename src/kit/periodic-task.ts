import { messageOf } from './nexus-error.js';
import { inBackground } from './work-priority.js';

/**
 * Runs `task` every `everyMs` as background work (see `inBackground`), never two runs at once (a slow run makes the next tick skip), and
 * never keeping the process alive on its own. `stop` waits for the run in flight.
 *
 * A run that fails goes to `onError` and the loop carries on: a loop must outlive the faults it
 * meets (a database restarting under it), and a failed run must never become an unhandled
 * rejection, which would end the process. Without `onError` the failure is a process warning.
 */
export class PeriodicTask {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly everyMs: number,
    private readonly task: () => Promise<void>,
    private readonly onError: (error: unknown) => void = (error) => process.emitWarning(`a periodic task failed: ${messageOf(error)}`),
  ) {}

  /** Starts ticking; with `now`, the first run is at once instead of after one period. */
  start(now = false): void {
    if (now) this.tick();
    this.timer = setInterval(() => this.tick(), this.everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private tick(): void {
    this.running ??= inBackground(this.task)
      .catch((error: unknown) => this.onError(error))
      .finally(() => {
        this.running = undefined;
      });
  }
}
