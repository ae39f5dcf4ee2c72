import { readFile, readdir } from 'node:fs/promises';

export interface VmmProcess {
  pid: number;
  /** The VM folder id the process runs from (found in its command line). */
  vmId: string;
  command: string;
}

const VMM_BINARY = /(^|\/)(qemu-system-[a-z0-9_]+|firecracker|jailer)$/;

/**
 * Every VMM process on the host whose command line points into `<run-dir>/vms/<id>/`: the ones
 * Nexus started, whether or not a pid file still names them.
 */
export async function scanVmmProcesses(runDir: string): Promise<VmmProcess[]> {
  const marker = `${runDir.replace(/\/+$/, '')}/vms/`;
  const idPattern = new RegExp(`${escapeRegExp(marker)}([0-9a-f-]{36})/`);
  const found: VmmProcess[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    } catch {
      continue; // exited while we looked
    }
    if (!argv[0] || !VMM_BINARY.test(argv[0])) continue;
    const id = idPattern.exec(argv.join(' '))?.[1];
    if (id) found.push({ pid: Number(name), vmId: id, command: argv.join(' ').slice(0, 300) });
  }
  return found;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
