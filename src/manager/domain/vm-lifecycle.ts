import type { AgentVmState } from '../../contracts/agent-vm-api.js';
import type { DesiredState, ObservedState, VmLifecycleAction } from '../../contracts/vm-api.js';
import { NexusError } from '../../kit/nexus-error.js';

/** The desired state each user action asks for. */
export const DESIRED_BY_ACTION: Record<VmLifecycleAction, DesiredState> = {
  start: 'running',
  stop: 'stopped',
  pause: 'paused',
  resume: 'running',
  hibernate: 'hibernated',
  wake: 'running',
};

export type ActionVerdict = { ok: true } | { ok: false; message: string; suggestion: string };

/** From which observed states each action makes sense. Anything else is an impossible transition. */
const ACTION_ALLOWED_FROM: Record<VmLifecycleAction, readonly ObservedState[]> = {
  start: ['requested', 'configured', 'starting', 'running', 'paused', 'stopping', 'stopped', 'failed', 'unknown', 'hibernated'],
  stop: ['requested', 'configured', 'starting', 'running', 'paused', 'stopping', 'stopped', 'failed', 'unknown', 'hibernated'],
  pause: ['starting', 'running', 'paused'],
  resume: ['paused', 'running'],
  hibernate: ['running', 'paused', 'hibernated'],
  wake: ['hibernated', 'running'],
};

const SUGGESTION_FOR: Record<VmLifecycleAction, string> = {
  start: 'Wait for the deletion to finish, then create it again.',
  stop: 'Wait for the deletion to finish.',
  pause: 'Start it first: POST /v1/vms/:id/start.',
  resume: 'Only a paused VM can be resumed; start a stopped one.',
  hibernate: 'Only a running or paused VM hibernates: start it first.',
  wake: 'Only a hibernated VM wakes; start a stopped one.',
};

/** Whether a user may take this action on a VM in this state. Pure: the table is the rule. */
export function judgeAction(action: VmLifecycleAction, observed: ObservedState, desired: DesiredState): ActionVerdict {
  if (desired === 'deleted' || observed === 'deleting') {
    return { ok: false, message: `cannot ${action} a VM that is being deleted`, suggestion: SUGGESTION_FOR[action] };
  }
  if (!ACTION_ALLOWED_FROM[action].includes(observed)) {
    return { ok: false, message: `cannot ${action} a VM that is ${observed}`, suggestion: SUGGESTION_FOR[action] };
  }
  return { ok: true };
}

/** What the agent reports, or `absent` when it does not have the VM. */
export type AgentView = AgentVmState | 'absent';

/** The one next step that brings the agent's VM closer to the desired state. */
export type ReconcileStep = 'ensure' | 'start' | 'resume' | 'pause' | 'stop' | 'hibernate' | 'wake' | 'wait' | 'none';

/**
 * The reconciler's decision: compares the desired state with what the agent reports, never with
 * what happened before. Repeating a step that already happened is harmless (agent calls are
 * idempotent), so this may be asked again at any time.
 */
export function nextStep(desired: Exclude<DesiredState, 'deleted'>, agent: AgentView): ReconcileStep {
  if (agent === 'absent') return 'ensure';
  switch (desired) {
    case 'running':
      if (agent === 'running') return 'none';
      if (agent === 'paused') return 'resume';
      if (agent === 'starting') return 'wait';
      if (agent === 'hibernated') return 'wake';
      return 'start';
    case 'stopped':
      // A hibernated VM runs nothing: it stays so, and a start later boots it afresh.
      if (agent === 'running' || agent === 'paused' || agent === 'starting') return 'stop';
      return 'none';
    case 'paused':
      if (agent === 'paused') return 'none';
      if (agent === 'running') return 'pause';
      if (agent === 'starting') return 'wait';
      if (agent === 'hibernated') return 'wake';
      return 'start';
    case 'hibernated':
      if (agent === 'running' || agent === 'paused') return 'hibernate';
      if (agent === 'starting') return 'wait';
      // Hibernated already, or not running (nothing to save): it stays as it is.
      return 'none';
  }
}

/** The observed state a VM has when its agent reports this. */
export function observedFromAgent(agent: AgentView): ObservedState {
  return agent === 'absent' ? 'requested' : agent;
}

/**
 * Whether an agent call that failed is retried as it is, with backoff (the agent was out of reach,
 * or something unexpected broke), rather than recorded as the VM's failure (the agent refused:
 * a bad spec, a VMM that would not start). The one place that decides it.
 */
export function isRetryable(error: unknown): boolean {
  return !(error instanceof NexusError) || error.code === 'unavailable';
}

/** A VM's start history, as its row keeps it. */
export interface StartHistory {
  /** Failed starts in a row. */
  startFailures: number;
  /** When its VMM last started. */
  startedAt: Date | null;
}

/** The restart rules: how many failed starts in a row give a VM up, and how long a run forgives them. */
export interface RestartBudget {
  /** Failed starts in a row after which the VM stays `failed` until a user acts. */
  starts: number;
  /** A VMM that runs this long counts as started for good. */
  stableRunMs: number;
}

/** Out of starts: the VM waits, failed, for a user to ask again. */
export function isGivenUp(history: StartHistory, budget: RestartBudget): boolean {
  return history.startFailures >= budget.starts;
}

/** Whether the VMM has run long enough for its earlier failures to be forgiven (one never started has). */
export function hasRunLongEnough(history: StartHistory, now: Date, budget: RestartBudget): boolean {
  return history.startedAt === null || now.getTime() - history.startedAt.getTime() >= budget.stableRunMs;
}

/**
 * Failed starts in a row once the VMM has exited on its own: one that dies soon after starting (a
 * guest that panics on boot) adds to the count; one that ran a good while starts it again at one.
 */
export function failuresAfterExit(history: StartHistory, now: Date, budget: RestartBudget): number {
  return hasRunLongEnough(history, now, budget) ? 1 : history.startFailures + 1;
}
