import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentOptions, resolveAgentConfig } from '../../src/agent/config.js';
import { type RunningAgent, startAgent } from '../../src/agent/main.js';
import { type HollowOptions, hollowHost } from '../doubles/hollow-host.js';
import { captureLogger } from './capture-logger.js';

export interface HollowAgent {
  agent: RunningAgent;
  host: ReturnType<typeof hollowHost>;
  runDir: string;
  /** Paths of the (empty) image files the hollow VMs are created from. */
  image: { kernel: string; rootfs: string };
  /** Every line the agent logged so far, parsed. */
  logs: Array<Record<string, unknown>>;
}

/**
 * A real agent (in this process) over a hollow host, enrolled with the manager at `managerUrl`.
 * Its run dir gets a tiny fake image, so the agent's path policy is exercised as for real.
 */
export async function startHollowAgent(
  managerUrl: string,
  joinToken: string,
  runDir: string,
  name: string,
  options: HollowOptions = {},
  agentOptions: AgentOptions = {},
): Promise<HollowAgent> {
  const images = join(runDir, 'images', 'hollow');
  mkdirSync(images, { recursive: true });
  writeFileSync(join(images, 'vmlinux'), 'hollow kernel');
  writeFileSync(join(images, 'rootfs.ext4'), Buffer.alloc(4096));
  const config = resolveAgentConfig({ bind: '127.0.0.1:0', runDir, managerUrl, joinToken, name, ...agentOptions }, {});
  const host = hollowHost(options);
  const { log, lines } = captureLogger(`hollow-${name}`);
  const agent = await startAgent(config, log, host);
  return { agent, host, runDir, image: { kernel: join(images, 'vmlinux'), rootfs: join(images, 'rootfs.ext4') }, logs: lines };
}
