import type { Logger } from 'pino';
import { UndoStack } from '../../kit/undo-stack.js';

/**
 * One piece of host work, safe to run again: it says whether the world still needs it (reading the
 * world, not remembering), does it, and says how to take it back.
 */
export interface Step {
  /** What it does, for logs and undo labels: "copy drive rootfs", "make TAP nx1a2b3c4d". */
  readonly name: string;
  /** False once the step's work is done (by this run or an earlier one): the plan skips it. */
  isNeeded(): Promise<boolean>;
  /** Does the work; one that throws has changed nothing (or cleaned up after itself). */
  do(): Promise<void>;
  /** Takes back what `do` did, if the plan fails later; absent when nothing is to be taken back. */
  undo?(): Promise<void>;
}

/** What a plan's run did: the steps it ran and those it found done. */
export interface PlanRun {
  done: string[];
  skipped: string[];
}

/**
 * Runs `steps` in order, each only when it is needed. When one fails, the steps this run did are
 * undone last-first (an undo that fails is logged, the others still run) and the failure is thrown:
 * a failed plan leaves the host as it found it, and a retried plan skips what is already done.
 * Steps made by a function are made when their turn comes, so they can use what earlier steps did.
 */
export async function runPlan(plan: string, steps: ReadonlyArray<Step | (() => Step | undefined)>, log: Logger): Promise<PlanRun> {
  const undo = new UndoStack(log);
  const run: PlanRun = { done: [], skipped: [] };
  try {
    for (const entry of steps) {
      const step = typeof entry === 'function' ? entry() : entry;
      if (!step) continue;
      if (!(await step.isNeeded())) {
        run.skipped.push(step.name);
        continue;
      }
      await step.do();
      run.done.push(step.name);
      const takeBack = step.undo?.bind(step);
      if (takeBack) undo.push(step.name, takeBack);
    }
  } catch (error) {
    log.debug({ plan, done: run.done }, `${plan} failed: undoing what it did`);
    await undo.unwind();
    throw error;
  }
  return run;
}
