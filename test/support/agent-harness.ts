import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { type NexusProcess, eventually, spawnNexus } from './nexus-process.js';
import { send } from './test-manager.js';

export interface AgentHarness {
  url: string;
  process: NexusProcess;
  /** Calls the agent with its credential. */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; headers: Headers; body: any }>;
}

/**
 * A standalone `nexus agent` process on a free loopback port, with its own run dir and the
 * given bridge. Answers once it serves requests.
 */
export async function startAgentProcess(runDir: string, env: Record<string, string>, managerUrl?: string): Promise<AgentHarness> {
  const port = await freePort();
  const args = ['agent', '--bind', `127.0.0.1:${port}`, '--run-dir', runDir];
  if (managerUrl) args.push('--manager', managerUrl);
  const process = spawnNexus(args, env);
  const url = `http://127.0.0.1:${port}`;
  const identityFile = join(runDir, 'agent', 'identity.json');
  let credential = '';
  await eventually(
    'the agent serves requests',
    async () => {
      if (process.child.exitCode !== null) throw new Error(`the agent exited:\n${process.output()}`);
      try {
        credential = JSON.parse(readFileSync(identityFile, 'utf8')).credential;
      } catch {
        return false;
      }
      const health = await send(`${url}/agent/v1/health`, { headers: { authorization: `Bearer ${credential}` } }).catch(() => undefined);
      return health?.status === 200;
    },
    30_000,
  );
  return {
    url,
    process,
    call: (method, path, body) => send(`${url}${path}`, { method, body, headers: { authorization: `Bearer ${credential}` } }),
  };
}
