import type { Logger } from 'pino';

interface UndoStep {
  label: string;
  run: () => Promise<void> | void;
}

/** An undo that threw, with what it threw. */
export interface UndoFailure {
  label: string;
  error: unknown;
}

/**
 * Every action that changes the world registers how to take it back. On failure or shutdown the
 * undos run last-first; one that fails is logged with its label and the rest still run, so a
 * partial failure never strands the resources registered before it. The failures are answered
 * too, so a caller for whom a failed undo matters (a stop that must leave nothing) can say so.
 */
export class UndoStack {
  private steps: UndoStep[] = [];
  private unwinding: Promise<UndoFailure[]> | undefined;

  constructor(private readonly log: Logger) {}

  push(label: string, run: () => Promise<void> | void): void {
    this.steps.push({ label, run });
  }

  /** Runs every registered undo once, last-first. Calling it again waits for the same run. */
  async unwind(): Promise<void> {
    await this.unwindReporting();
  }

  /** {@link unwind}, answering the undos that failed (each logged already). */
  unwindReporting(): Promise<UndoFailure[]> {
    this.unwinding ??= this.runAll();
    return this.unwinding;
  }

  private async runAll(): Promise<UndoFailure[]> {
    const steps = this.steps.reverse();
    this.steps = [];
    const failures: UndoFailure[] = [];
    for (const step of steps) {
      try {
        await step.run();
      } catch (error) {
        this.log.error({ err: error, undo: step.label }, `could not undo: ${step.label}`);
        failures.push({ label: step.label, error });
      }
    }
    return failures;
  }
}
