import type { Logger } from 'pino';

interface UndoStep {
  label: string;
  run: () => Promise<void> | void;
}

/**
 * Every action that changes the world registers how to take it back. On failure or shutdown the
 * undos run last-first; one that fails is logged with its label and the rest still run, so a
 * partial failure never strands the resources registered before it.
 */
export class UndoStack {
  private steps: UndoStep[] = [];
  private unwinding: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  push(label: string, run: () => Promise<void> | void): void {
    this.steps.push({ label, run });
  }

  /** Runs every registered undo once, last-first. Calling it again waits for the same run. */
  unwind(): Promise<void> {
    this.unwinding ??= this.runAll();
    return this.unwinding;
  }

  private async runAll(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step.run();
      } catch (error) {
        this.log.error({ err: error, undo: step.label }, `could not undo: ${step.label}`);
      }
    }
  }
}
