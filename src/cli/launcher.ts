/**
 * Everything the CLI takes from the manager and the agent: their configuration, their start and
 * stop, and the host checks `nexus doctor` and `nexus dev` run. Commands import these from here,
 * never from inside manager/ or agent/, and this file takes them only from each process's entry
 * points (main.ts, config.ts), so a command cannot come to lean on either one's internals.
 */
export { adminTokenFile, resolveManagerConfig } from '../manager/config.js';
export { type RunningManager, migrateDatabase, startManager } from '../manager/main.js';
export { resolveAgentConfig } from '../agent/config.js';
export {
  type HostLeftovers,
  type RequirementCheck,
  CredentialStore,
  agentHostSweep,
  aptInstall,
  checkHostRequirements,
  planInstall,
  probeKvm,
  startAgent,
} from '../agent/main.js';
