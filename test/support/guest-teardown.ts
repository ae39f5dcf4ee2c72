import { existsSync } from 'node:fs';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { agentHostSweep } from '../../src/agent/main.js';
import type { AgentHarness } from './agent-harness.js';
import { captureLogger } from './capture-logger.js';
import { send } from './test-manager.js';

/**
 * Ends the guests of a test's manager and agent, whatever state the test left them in: every VM
 * is deleted through the API, the agent stops, and whatever of its run dir still runs (a delete
 * refused or cut short: a production agent leaves its VMs running when it stops) is swept as
 * `nexus dev` sweeps it: VMMs killed by pid, their namespaces, TAPs and DHCP servers removed.
 */
export async function endGuests(managerUrl: string | undefined, agent: AgentHarness | undefined, runDir: string, agentEnv: NodeJS.ProcessEnv): Promise<void> {
  if (managerUrl) {
    for (const vm of (await send(`${managerUrl}/v1/vms`)).body?.items ?? []) await send(`${managerUrl}/v1/vms/${vm.id}?wait=60`, { method: 'DELETE' });
  }
  await agent?.process.stop();
  if (existsSync(runDir)) await (await agentHostSweep(resolveAgentConfig({ runDir }, agentEnv), captureLogger('guest-teardown').log)).sweep();
}
