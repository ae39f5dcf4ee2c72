import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { DEFAULT_IMAGE_NAME, buildGuestImage } from '../../images/guest-image-builder.js';
import { urlOf } from '../../kit/listen-address.js';
import { type Logger, createLogger } from '../../kit/logger.js';
import { NexusError } from '../../kit/nexus-error.js';
import { CredentialStore, type RunningManager, adminTokenFile, agentHostSweep, resolveAgentConfig, resolveManagerConfig, startManager } from '../launcher.js';
import { sweepAgentLeftovers } from '../agent-leftovers.js';
import { ensureHostReady } from '../host-readiness.js';
import { printError } from '../output/print.js';
import { type FailService, runService } from '../service-lifecycle.js';

const AGENT_READY_TIMEOUT_MS = 60_000;
/** How often the terminal hears how many VMs are still stopping. */
const STOP_PROGRESS_MS = 5000;
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
          const agent = await startLocalAgent(manager, config.dataDir, flags, fail, { say, log });
          say(
            [
              '',
              'Nexus dev is up.',
              `  API     ${manager.url}   (curl ${manager.url}/readyz)`,
              `  agent   ${agent.url}, run dir ${agent.runDir}`,
              `  data    ${config.dataDir} (embedded PGlite)`,
              `  token   ${adminTokenFile(config.dataDir)} (the admin token; the CLI reads it, curl needs -H "Authorization: Bearer $(cat …)")`,
              `  hosts   ${relative(process.cwd(), NEXUS_BIN)} hosts list --api ${manager.url}`,
              'Ctrl-C stops both and every VM (their folders and disks stay); again, it kills the VMs instead of waiting.',
              '',
            ].join('\n'),
          );
          return {
            close: async () => {
              // The manager first, so nothing asks the agent for a VM while it stops them.
              try {
                await manager.close();
              } finally {
                await agent.stop();
              }
            },
            hurry: () => agent.hurry(),
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
  /**
   * Stops the agent, which stops every VM and removes their network, saying on the terminal what
   * it waits for; resolves once no VMM of the run dir is left. No time limit: cutting it short
   * would leave VMs running.
   */
  stop(): Promise<void>;
  /** Asked again: kill the VMs instead of waiting for their guests; a third time, kill the agent and clean up after it. */
  hurry(): void;
}

/**
 * Starts the local agent as a child process (the same `nexus agent` an operator runs), enrolled
 * with a join token minted here when it is not enrolled yet, and waits until it is `ready`.
 */
async function startLocalAgent(
  manager: RunningManager,
  dataDir: string,
  flags: DevFlags,
  fail: FailService,
  out: { say: (line: string) => void; log: Logger },
): Promise<LocalAgent> {
  const { say } = out;
  const stateDir = join(dataDir, 'agent');
  const name = process.env.NEXUS_HOST_NAME ?? hostname();
  const joinToken = await joinTokenIfNeeded(manager, new CredentialStore(stateDir), name);
  // Resolved here only to pass on, to print and to check the host after it: the agent resolves the same values itself.
  const agentConfig = resolveAgentConfig({ bind: flags.agentBind, runDir: flags.runDir, stateDir }, process.env);
  const host = await agentHostSweep(agentConfig, out.log);

  const env: NodeJS.ProcessEnv = { ...process.env, NEXUS_HOST_NAME: name };
  delete env.NEXUS_JOIN_TOKEN;
  if (joinToken) env.NEXUS_JOIN_TOKEN = joinToken;
  // The child inherits AGENT_BIND and FC_RUN_DIR; only flags given to dev are passed on as flags.
  const args = [NEXUS_BIN, 'agent', '--exit-with-parent', '--stop-vms-on-exit', '--state-dir', stateDir, '--manager', manager.url];
  if (flags.agentBind) args.push('--bind', flags.agentBind);
  if (flags.runDir) args.push('--run-dir', flags.runDir);
  // The IPC channel is the child's lifeline: if this process dies, even by SIGKILL, the agent sees
  // the channel close and stops, so no agent outlives `nexus dev`. In a session of its own, so a
  // terminal's Ctrl-C or hang-up, sent to the whole foreground process group, reaches only this
  // process, which stops the agent in order (the agent would take our SIGTERM as a second request).
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true });
  let stopping = false;
  let ready = false;
  let cleanExit = false;
  const running = () => child.exitCode === null && child.signalCode === null;
  const exited = new Promise<string>((resolve) => {
    child.on('exit', (code, signal) => {
      cleanExit = code === 0;
      resolve(`the local agent exited (${signal ?? `code ${code}`})`);
    });
    child.on('error', (error) => resolve(`the local agent could not start: ${error.message}`));
  });
  void exited.then((reason) => {
    if (!stopping) fail(reason);
  });

  const stopAgent = async () => {
    stopping = true;
    const vmms = await host.runningVmms();
    if (vmms > 0) say(`nexus: stopping ${countOf(vmms, 'VM')}… (Ctrl-C again kills them instead of waiting for their guests)`);
    if (running()) child.kill('SIGTERM');
    const progress = setInterval(() => {
      void host.runningVmms().then(
        (left) => left > 0 && say(`nexus: still stopping VMs: ${left} of ${vmms} running…`),
        () => undefined,
      );
    }, STOP_PROGRESS_MS);
    let reason: string;
    try {
      reason = await exited;
    } finally {
      clearInterval(progress);
    }
    // Only once ready was the run dir this agent's (an agent refused at start may have found
    // another one running there): then whatever it left is ours to end, checked, not assumed.
    if (!ready) return;
    await sweepAgentLeftovers(host, { clean: cleanExit, reason }, say);
    if (vmms > 0) say(`nexus: ${countOf(vmms, 'VM')} stopped and their network removed; their folders stay in ${agentConfig.runDir}/vms`);
  };
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= stopAgent());
  let hurried = 0;
  const hurry = () => {
    stopping = true;
    hurried++;
    if (!running()) return;
    if (hurried === 1) {
      say('nexus: killing the VMs still running instead of waiting for their guests…');
      child.kill('SIGTERM');
    } else if (hurried === 2) {
      say('nexus: killing the local agent; nexus dev ends what it leaves…');
      child.kill('SIGKILL');
    }
  };

  try {
    const since = Date.now();
    await Promise.race([waitUntilReady(manager, name, since), exited.then((reason) => Promise.reject(new Error(reason)))]);
    ready = true;
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: urlOf(agentConfig.bind), runDir: agentConfig.runDir, stop, hurry };
}

function countOf(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/**
 * A join token for the local agent, or none when its stored identity is for this manager and the
 * manager still knows that host. Otherwise (no identity, another manager address, a wiped data
 * dir) the stale identity is removed, so the agent enrolls afresh; and when a host of the agent's
 * name is registered already, that is this agent's own earlier enrollment, so the token is minted
 * to replace that host even while it still looks ready (which a plain join token may not).
 */
async function joinTokenIfNeeded(manager: RunningManager, store: CredentialStore, name: string): Promise<string | undefined> {
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
  const enrolledBefore = (await manager.hosts.list()).some((host) => host.name === name);
  return (await manager.hosts.mintJoinToken(600, enrolledBefore ? name : undefined)).token;
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
