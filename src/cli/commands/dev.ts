import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { resolveAgentConfig } from '../../agent/config.js';
import { DEFAULT_IMAGE_NAME, buildGuestImage } from '../../images/guest-image-builder.js';
import { CredentialStore } from '../../agent/host/credential-store.js';
import { urlOf } from '../../kit/listen-address.js';
import { stopChild } from '../../kit/child-process.js';
import { createLogger } from '../../kit/logger.js';
import { NexusError } from '../../kit/nexus-error.js';
import { adminTokenFile, resolveManagerConfig } from '../../manager/config.js';
import { type RunningManager, startManager } from '../../manager/main.js';
import { ensureHostReady } from '../host-readiness.js';
import { printError } from '../output/print.js';
import { type FailService, runService } from '../service-lifecycle.js';

const AGENT_READY_TIMEOUT_MS = 60_000;
// Long enough for the agent to power off its VMs (3 s each, in parallel) before it is killed.
const AGENT_STOP_GRACE_MS = 20_000;
/** The `nexus` binary, whether we run from dist/ or from src/ under tsx. */
const NEXUS_BIN = fileURLToPath(new URL('../../../bin/nexus.js', import.meta.url));

interface DevFlags {
  listen?: string;
  agentBind?: string;
  dataDir?: string;
  runDir?: string;
  install: boolean;
  image: boolean;
}

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('run a manager and one local agent in one process tree, on the embedded database')
    .option('--listen <host:port>', 'manager API (env NEXUS_LISTEN, default 127.0.0.1:8080)')
    .option('--agent-bind <host:port>', 'local agent API (env AGENT_BIND, default 127.0.0.1:9090)')
    .option('--data-dir <dir>', 'embedded database and agent identity (env NEXUS_DATA_DIR, default ./.nexus)')
    .option('--run-dir <dir>', "the agent's run dir (env FC_RUN_DIR, default /srv/fc)")
    .option('--no-install', 'do not install missing host packages; fail and say what is missing')
    .option('--no-image', 'do not build the default guest image')
    .action(async (flags: DevFlags) => {
      const say = (line: string) => process.stderr.write(`${line}\n`);
      try {
        if (flags.install) await ensureHostReady(say);
      } catch (error) {
        printError(error, false);
        process.exit(1);
      }
      const config = resolveManagerConfig({ listen: flags.listen, dataDir: flags.dataDir, mode: 'dev' }, process.env);
      const log = createLogger({ name: 'manager', level: config.logLevel });
      await runService(log, async (fail) => {
        if (flags.image) await buildDefaultImage(flags, say);
        const manager = await startManager(config, log);
        try {
          const agent = await startLocalAgent(manager, config.dataDir, flags, fail);
          say(
            [
              '',
              'Nexus dev is up.',
              `  API     ${manager.url}   (curl ${manager.url}/readyz)`,
              `  agent   ${agent.url}, run dir ${agent.runDir}`,
              `  data    ${config.dataDir} (embedded PGlite)`,
              `  token   ${adminTokenFile(config.dataDir)} (the admin token; the CLI reads it, curl needs -H "Authorization: Bearer $(cat …)")`,
              `  hosts   ${relative(process.cwd(), NEXUS_BIN)} hosts list --api ${manager.url}`,
              'Ctrl-C stops both.',
              '',
            ].join('\n'),
          );
          return {
            close: async () => {
              await agent.stop();
              await manager.close();
            },
          };
        } catch (error) {
          await manager.close();
          throw error;
        }
      });
    });
}

/**
 * The guest image named `default`, built on the first start (progress on screen) and reused after.
 * A failure is reported but does not stop `nexus dev`: the control plane is useful without it.
 */
async function buildDefaultImage(flags: DevFlags, say: (line: string) => void): Promise<void> {
  const { runDir } = resolveAgentConfig({ runDir: flags.runDir }, process.env);
  try {
    const image = await buildGuestImage({ runDir, name: DEFAULT_IMAGE_NAME, onProgress: (line) => say(`nexus: ${line}`) });
    say(`nexus: guest image ${image.manifest.name} ${image.reused ? 'is up to date' : 'built'} in ${image.dir}`);
  } catch (error) {
    say(`nexus: could not build the default guest image: ${error instanceof Error ? error.message : String(error)}`);
    say('nexus: VMs need one; retry with `nexus image build`.');
  }
}

interface LocalAgent {
  url: string;
  runDir: string;
  stop(): Promise<void>;
}

/**
 * Starts the local agent as a child process (the same `nexus agent` an operator runs), enrolled
 * with a join token minted here when it is not enrolled yet, and waits until it is `ready`.
 */
async function startLocalAgent(manager: RunningManager, dataDir: string, flags: DevFlags, fail: FailService): Promise<LocalAgent> {
  const stateDir = join(dataDir, 'agent');
  const name = process.env.NEXUS_HOST_NAME ?? hostname();
  const joinToken = await joinTokenIfNeeded(manager, new CredentialStore(stateDir));
  // Resolved here only to pass on and to print: the agent resolves the same values itself.
  const agentConfig = resolveAgentConfig({ bind: flags.agentBind, runDir: flags.runDir, stateDir }, process.env);

  const env: NodeJS.ProcessEnv = { ...process.env, NEXUS_HOST_NAME: name };
  delete env.NEXUS_JOIN_TOKEN;
  if (joinToken) env.NEXUS_JOIN_TOKEN = joinToken;
  // The child inherits AGENT_BIND and FC_RUN_DIR; only flags given to dev are passed on as flags.
  const args = [NEXUS_BIN, 'agent', '--exit-with-parent', '--stop-vms-on-exit', '--state-dir', stateDir, '--manager', manager.url];
  if (flags.agentBind) args.push('--bind', flags.agentBind);
  if (flags.runDir) args.push('--run-dir', flags.runDir);
  // The IPC channel is the child's lifeline: if this process dies, even by SIGKILL, the agent sees
  // the channel close and stops, so no agent outlives `nexus dev`.
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let stopping = false;
  const exited = new Promise<string>((resolve) => {
    child.on('exit', (code, signal) => resolve(`the local agent exited (${signal ?? `code ${code}`})`));
    child.on('error', (error) => resolve(`the local agent could not start: ${error.message}`));
  });
  void exited.then((reason) => {
    if (!stopping) fail(reason);
  });
  const stop = async () => {
    stopping = true;
    await stopChild(child, AGENT_STOP_GRACE_MS);
  };

  try {
    const since = Date.now();
    await Promise.race([waitUntilReady(manager, name, since), exited.then((reason) => Promise.reject(new Error(reason)))]);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: urlOf(agentConfig.bind), runDir: agentConfig.runDir, stop };
}

/**
 * A join token when the agent has no identity for this manager, or one the manager no longer
 * knows (a wiped data dir): then the stale identity is removed, so the agent enrolls afresh.
 */
async function joinTokenIfNeeded(manager: RunningManager, store: CredentialStore): Promise<string | undefined> {
  const stored = await store.load().catch(() => undefined);
  const enrollment = stored?.enrollment;
  if (enrollment?.managerUrl === manager.url) {
    const known = await manager.hosts.get(enrollment.hostId).then(
      () => true,
      () => false,
    );
    if (known) return undefined;
  }
  await rm(store.path, { force: true });
  return (await manager.hosts.mintJoinToken(600)).token;
}

async function waitUntilReady(manager: RunningManager, name: string, sinceMs: number): Promise<void> {
  const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const hosts = await manager.hosts.list();
    if (hosts.some((host) => host.name === name && host.status === 'ready' && Date.parse(host.last_seen_at) >= sinceMs - 1000)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new NexusError('unavailable', `the local agent did not report ready within ${AGENT_READY_TIMEOUT_MS / 1000} s`, {
    suggestion: 'Read the agent log lines above.',
  });
}

