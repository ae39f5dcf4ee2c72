import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostLeftovers } from '../../../src/agent/main.js';
import { type LocalAgentHost, sweepAgentLeftovers } from '../../../src/cli/agent-leftovers.js';
import { NexusError } from '../../../src/kit/nexus-error.js';

/** A host that answers the leftovers given, one check after another, and counts its sweeps. */
function hostLeaving(...checks: HostLeftovers[]): LocalAgentHost & { sweeps: number } {
  const host = {
    sweeps: 0,
    leftovers: async () => checks.shift() ?? { vmms: [], network: [] },
    sweep: async () => {
      host.sweeps++;
      return 0;
    },
  };
  return host;
}

const NOTHING: HostLeftovers = { vmms: [], network: [] };

describe('what nexus dev checks once its agent has exited', () => {
  it('an agent that stopped cleanly and left nothing: no sweep, nothing said', async () => {
    const host = hostLeaving(NOTHING);
    const said: string[] = [];
    await sweepAgentLeftovers(host, { clean: true, reason: 'the local agent exited (code 0)' }, (line) => said.push(line));
    assert.equal(host.sweeps, 0);
    assert.deepEqual(said, []);
  });

  it('an agent that exited 0 but left its network: swept, and said so', async () => {
    const host = hostLeaving({ vmms: [], network: ['TAP tap-0a1b2c3d', 'bridge fcbr0', 'nftables table nexus_fcbr0'] }, NOTHING);
    const said: string[] = [];
    await sweepAgentLeftovers(host, { clean: true, reason: 'the local agent exited (code 0)' }, (line) => said.push(line));
    assert.equal(host.sweeps, 1, 'the network alone is reason to sweep');
    assert.deepEqual(said, [
      'nexus: the local agent exited (code 0), leaving TAP tap-0a1b2c3d, bridge fcbr0, nftables table nexus_fcbr0; ending the VMs it left and removing their network',
    ]);
  });

  it('an agent that failed or was killed: swept even when nothing shows', async () => {
    const host = hostLeaving(NOTHING, NOTHING);
    await sweepAgentLeftovers(host, { clean: false, reason: 'the local agent exited (SIGKILL)' }, () => undefined);
    assert.equal(host.sweeps, 1);
  });

  it('what the sweep could not remove is an error naming it, never a clean stop', async () => {
    const host = hostLeaving({ vmms: [4242], network: ['TAP tap-0a1b2c3d'] }, { vmms: [4242], network: ['bridge fcbr0'] });
    await assert.rejects(
      sweepAgentLeftovers(host, { clean: false, reason: 'the local agent exited (code 1)' }, () => undefined),
      (error: unknown) => {
        assert.ok(error instanceof NexusError, `a NexusError: ${String(error)}`);
        assert.equal(error.code, 'unavailable');
        assert.equal(error.message, 'nexus dev could not remove all its agent ran: 1 VMM (pid 4242), bridge fcbr0 remain');
        assert.match(error.suggestion ?? '', /Kill those VMMs by pid/);
        return true;
      },
    );
    assert.equal(host.sweeps, 1);
  });
});
