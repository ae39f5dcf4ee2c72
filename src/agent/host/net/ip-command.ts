import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NexusError } from '../../../kit/nexus-error.js';

const run = promisify(execFile);

/** Runs a host networking command; its stderr becomes the error, with what we were doing. */
export async function hostCommand(binary: string, args: string[], doing: string): Promise<string> {
  try {
    const { stdout } = await run(binary, args, { timeout: 10_000 });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? `${binary} not found (Debian package ${binary === 'ip' ? 'iproute2' : binary})` : stderr || (error as Error).message;
    throw new NexusError('unavailable', `${doing}: ${why}`, { cause: error });
  }
}

export interface LinkInfo {
  ifname: string;
  master?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ local: string; prefixlen: number; family: string }>;
}

/** `ip -j -d addr show dev <name>`, or undefined when there is no such device. */
export async function readLink(name: string): Promise<LinkInfo | undefined> {
  try {
    const { stdout } = await run('ip', ['-j', '-d', 'addr', 'show', 'dev', name], { timeout: 10_000 });
    return (JSON.parse(stdout) as LinkInfo[])[0];
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    if (/does not exist/.test(stderr)) return undefined;
    throw new NexusError('unavailable', `reading device ${name}: ${stderr.trim() || (error as Error).message}`, { cause: error });
  }
}

export async function listLinks(): Promise<LinkInfo[]> {
  return JSON.parse(await hostCommand('ip', ['-j', '-d', 'link', 'show'], 'listing network devices')) as LinkInfo[];
}
