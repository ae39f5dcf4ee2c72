import type { Command } from 'commander';
import { resolveAgentConfig, startAgent } from '../launcher.js';
import { createLogger } from '../../kit/logger.js';
import { runService } from '../service-lifecycle.js';
import { type TlsFlags, withTlsFlags } from '../tls-flags.js';

interface AgentFlags {
  bind?: string;
  advertise?: string;
  runDir?: string;
  stateDir?: string;
  manager?: string;
  joinToken?: string;
  name?: string;
  exitWithParent?: boolean;
  stopVmsOnExit?: boolean;
}

export function registerAgent(program: Command): void {
  const command = program
    .command('agent')
    .description('run the host agent (as root): VMM processes, networking, inventory')
    .option('--bind <host:port>', 'where the agent API listens (env AGENT_BIND, default 127.0.0.1:9090)')
    .option('--advertise <host:port>', 'the address the manager reaches this agent at (env AGENT_ADVERTISE, default the bind address)')
    .option('--run-dir <dir>', 'VM folders, images and sockets (env FC_RUN_DIR, default /srv/fc)')
    .option('--state-dir <dir>', 'credential and enrollment (env NEXUS_AGENT_STATE_DIR, default <run-dir>/agent)')
    .option('--manager <url>', 'manager to enroll with and heartbeat to (env NEXUS_MANAGER_URL)')
    .option('--join-token <token>', 'single-use join token; prefer env NEXUS_JOIN_TOKEN, which `ps` does not show')
    .option('--name <name>', 'host name in the registry (env NEXUS_HOST_NAME, default the hostname)')
    .addOption(program.createOption('--exit-with-parent', 'stop when the parent process goes away (used by nexus dev)').hideHelp())
    .addOption(program.createOption('--stop-vms-on-exit', 'stop every VM when the agent stops (used by nexus dev)').hideHelp());
  withTlsFlags(command, "an https manager's").action(async (flags: AgentFlags & TlsFlags) => {
    const config = resolveAgentConfig(
      {
        bind: flags.bind,
        advertise: flags.advertise,
        runDir: flags.runDir,
        stateDir: flags.stateDir,
        managerUrl: flags.manager,
        joinToken: flags.joinToken,
        name: flags.name,
        exitWithParent: flags.exitWithParent,
        stopVmsOnExit: flags.stopVmsOnExit,
        tlsCert: flags.tlsCert,
        tlsKey: flags.tlsKey,
        ca: flags.ca,
      },
      process.env,
    );
    const log = createLogger({ name: 'agent', level: config.logLevel });
    await runService(log, () => startAgent(config, log), { exitWithParent: config.exitWithParent });
  });
}
