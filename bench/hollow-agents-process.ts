/**
 * The hollow agents of the VM API bench, in a process of their own, so that their work (HTTP,
 * enrollment, heartbeats, reconciling hollow VMs) does not share an event loop with the load
 * generator and distort its latencies. Forked by `forkHollowAgents` with an IPC channel; it answers
 * one reply per request, and closes its agents and exits when the channel goes (the bench died).
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { HollowAgent } from '../test/support/hollow-agents.js';

/** One hollow agent to start: where it keeps its state, its join token and its host name. */
export interface HollowSpec {
  token: string;
  runDir: string;
  name: string;
}

/** What the bench asks the child. */
export type HollowRequest =
  { type: 'start'; managerUrl: string; agents: HollowSpec[] } | { type: 'close' } | { type: 'restart' } | { type: 'processes' } | { type: 'memory' };

/** What `start` answers: the image files of the first agent (every run dir links the same store). */
export interface HollowImage {
  kernel: string;
  rootfs: string;
}

type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/** The bench's handle on the child process. */
export interface HollowAgentsProcess {
  /** Starts one hollow agent per spec, enrolled with the manager at `managerUrl`. */
  start(managerUrl: string, agents: HollowSpec[]): Promise<HollowImage>;
  /** Closes every agent (their hollow VMs stay in memory, gone with the child). */
  close(): Promise<void>;
  /** Closes every agent and starts each again in its run dir, with no join token (it has enrolled). */
  restart(): Promise<void>;
  /** How many hollow VMM processes run across all agents. */
  processes(): Promise<number>;
  /** The child's memory (every agent in it): `process.memoryUsage()`. */
  memory(): Promise<NodeJS.MemoryUsage>;
  /** Stops the child by its pid (SIGKILL after 10 s) and waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Forks the child (`node --import tsx` on this file) at a lower CPU priority (nice 10): on a small
 * machine the agents' work, which in production runs on other hosts, must not take CPU from the
 * manager under test.
 */
export function forkHollowAgents(): HollowAgentsProcess {
  const child = fork(fileURLToPath(import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (child.pid !== undefined) setPriority(child.pid, 10);
  const exited = once(child, 'exit');
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  child.on('message', (reply: Reply) => {
    const waiter = pending.get(reply.id);
    pending.delete(reply.id);
    if (reply.ok) waiter?.resolve(reply.value);
    else waiter?.reject(new Error(`hollow agents: ${reply.error}`));
  });
  void exited.then(() => {
    for (const waiter of pending.values()) waiter.reject(new Error('the hollow agents process exited'));
    pending.clear();
  });
  const ask = (request: HollowRequest) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      child.send({ id, ...request });
    });
  return {
    start: async (managerUrl, agents) => (await ask({ type: 'start', managerUrl, agents })) as HollowImage,
    close: async () => void (await ask({ type: 'close' })),
    restart: async () => void (await ask({ type: 'restart' })),
    processes: async () => (await ask({ type: 'processes' })) as number,
    memory: async () => (await ask({ type: 'memory' })) as NodeJS.MemoryUsage,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The child's side: the agents it runs, and the manager they enrolled with. */
async function serve(): Promise<void> {
  // Imported here, so the bench that imports this file for `forkHollowAgents` loads no agent code.
  const { startHollowAgent } = await import('../test/support/hollow-agents.js');
  let agents: HollowAgent[] = [];
  let managerUrl = '';
  let names: string[] = [];
  const closeAll = async () => {
    const closing = agents;
    agents = [];
    await Promise.all(closing.map((agent) => agent.agent.close()));
  };
  const handle = async (request: HollowRequest): Promise<unknown> => {
    switch (request.type) {
      case 'start': {
        managerUrl = request.managerUrl;
        names = request.agents.map((agent) => agent.name);
        agents = await Promise.all(request.agents.map((agent) => startHollowAgent(managerUrl, agent.token, agent.runDir, agent.name)));
        return agents[0]?.image ?? { kernel: '', rootfs: '' };
      }
      case 'close':
        return closeAll();
      case 'restart': {
        const runDirs = agents.map((agent) => agent.runDir);
        await closeAll();
        agents = await Promise.all(runDirs.map((runDir, i) => startHollowAgent(managerUrl, '', runDir, names[i] ?? `hollow-${i}`)));
        return undefined;
      }
      case 'processes':
        return agents.reduce((sum, agent) => sum + agent.host.supervisor.processes.size, 0);
      case 'memory':
        return process.memoryUsage();
    }
  };
  process.on('message', (message: HollowRequest & { id: number }) => {
    handle(message).then(
      (value) => process.send?.({ id: message.id, ok: true, value: value ?? null } satisfies Reply),
      (error: unknown) => process.send?.({ id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) } satisfies Reply),
    );
  });
  // The bench is gone (it exited, crashed or closed the channel): do not outlive it.
  process.on('disconnect', () => {
    const timer = setTimeout(() => process.exit(1), 5_000);
    timer.unref();
    void closeAll().finally(() => process.exit(0));
  });
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) await serve();
