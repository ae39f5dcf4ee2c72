import { runHostTool } from '../../../kit/host-tool.js';

export interface LinkInfo {
  ifname: string;
  master?: string;
  /** The device's alias (`ip link set … alias`): how Nexus marks a bridge it made. */
  ifalias?: string;
  operstate?: string;
  /** `LOWER_UP` among them on a TAP: a process holds it open (a running VMM). */
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ local: string; prefixlen: number; family: string }>;
}

/** Runs `ip …`, answering its stdout; failures say what we were doing and why. */
export async function ip(args: string[], doing: string): Promise<string> {
  return (await runHostTool('ip', args, { doing })).stdout;
}

/** `ip -j -d addr show dev <name>`, or undefined when there is no such device. */
export async function readLink(name: string): Promise<LinkInfo | undefined> {
  try {
    return (JSON.parse(await ip(['-j', '-d', 'addr', 'show', 'dev', name], `reading device ${name}`)) as LinkInfo[])[0];
  } catch (error) {
    if (/does not exist/.test((error as Error).message)) return undefined;
    throw error;
  }
}

export async function listLinks(): Promise<LinkInfo[]> {
  return JSON.parse(await ip(['-j', '-d', 'link', 'show'], 'listing network devices')) as LinkInfo[];
}
