import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AgentVmState } from '../../../src/contracts/agent-vm-api.js';
import type { DesiredState, ObservedState, VmLifecycleAction } from '../../../src/contracts/vm-api.js';
import { type AgentView, type ReconcileStep, judgeAction, nextStep, observedFromAgent } from '../../../src/manager/domain/vm-lifecycle.js';

const OBSERVED: ObservedState[] = [
  'requested',
  'configured',
  'starting',
  'running',
  'paused',
  'stopping',
  'stopped',
  'failed',
  'deleting',
  'unknown',
  'hibernated',
];
const ACTIONS: VmLifecycleAction[] = ['start', 'stop', 'pause', 'resume', 'hibernate', 'wake'];
const AGENT: AgentView[] = ['absent', 'configured', 'starting', 'running', 'paused', 'stopped', 'failed', 'hibernated'];

describe('judgeAction: every action from every state', () => {
  const allowed: Record<VmLifecycleAction, ObservedState[]> = {
    start: OBSERVED.filter((state) => state !== 'deleting'),
    stop: OBSERVED.filter((state) => state !== 'deleting'),
    pause: ['starting', 'running', 'paused'],
    resume: ['paused', 'running'],
    hibernate: ['running', 'paused', 'hibernated'],
    wake: ['hibernated', 'running'],
  };
  for (const action of ACTIONS) {
    for (const observed of OBSERVED) {
      const expected = allowed[action].includes(observed);
      it(`${action} from ${observed}: ${expected ? 'allowed' : 'refused'}`, () => {
        const verdict = judgeAction(action, observed, 'running');
        assert.equal(verdict.ok, expected);
        if (!verdict.ok) {
          assert.match(verdict.message, new RegExp(`cannot ${action}`));
          assert.ok(verdict.suggestion.length > 0);
        }
      });
    }
    it(`${action} on a VM being deleted is refused whatever its state`, () => {
      for (const observed of OBSERVED) assert.equal(judgeAction(action, observed, 'deleted').ok, false);
    });
  }
});

describe('nextStep: every desired state against every agent view', () => {
  const table: Record<Exclude<DesiredState, 'deleted'>, Record<AgentView, ReconcileStep>> = {
    running: {
      absent: 'ensure',
      configured: 'start',
      starting: 'wait',
      running: 'none',
      paused: 'resume',
      stopped: 'start',
      failed: 'start',
      hibernated: 'wake',
    },
    stopped: { absent: 'ensure', configured: 'none', starting: 'stop', running: 'stop', paused: 'stop', stopped: 'none', failed: 'none', hibernated: 'none' },
    paused: {
      absent: 'ensure',
      configured: 'start',
      starting: 'wait',
      running: 'pause',
      paused: 'none',
      stopped: 'start',
      failed: 'start',
      hibernated: 'wake',
    },
    hibernated: {
      absent: 'ensure',
      configured: 'none',
      starting: 'wait',
      running: 'hibernate',
      paused: 'hibernate',
      stopped: 'none',
      failed: 'none',
      hibernated: 'none',
    },
  };
  for (const [desired, row] of Object.entries(table) as Array<[Exclude<DesiredState, 'deleted'>, Record<AgentView, ReconcileStep>]>) {
    for (const agent of AGENT) {
      it(`desired ${desired}, agent ${agent} -> ${row[agent]}`, () => assert.equal(nextStep(desired, agent), row[agent]));
    }
  }
  it('maps what the agent reports to the observed state', () => {
    assert.equal(observedFromAgent('absent'), 'requested');
    for (const state of AGENT.filter((view): view is AgentVmState => view !== 'absent')) assert.equal(observedFromAgent(state), state);
  });
});
