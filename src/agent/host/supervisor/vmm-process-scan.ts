import { readFile, readdir, readlink } from 'node:fs/promises';

export interface VmmProcess {
  pid: number;
  /** The VM folder id the process runs from (found in its command line). */
  vmId: string;
  command: string;
}

const VMM_BINARY = /(^|\/)(qemu-system-[a-z0-9_]+|firecracker|jailer)$/;

/**
 * Every VMM process on the host whose command line points into `<run-dir>/vms/<id>/`: the ones
 * Nexus started, whether or not a pid file still names them. A jailed Firecracker names only
 * paths inside its jail: it is found by its root (chroot) under `jailBase` and its `--id <vm id>-<launch>`.
 */
export async function scanVmmProcesses(runDir: string, jailBase?: string): Promise<VmmProcess[]> {
  const marker = `${runDir.replace(/\/+$/, '')}/vms/`;
  const idPattern = new RegExp(`${escapeRegExp(marker)}([0-9a-f-]{36})/`);
  const jailedId = /(?:^| )--id ([0-9a-f-]{36})-[a-z0-9]+(?: |$)/;
  const jailPrefix = jailBase ? `${jailBase.replace(/\/+$/, '')}/` : undefined;
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
    const command = argv.join(' ');
    let id = idPattern.exec(command)?.[1];
    if (!id && jailPrefix) {
      const jailed = jailedId.exec(command)?.[1];
      const root = jailed ? await readlink(`/proc/${name}/root`).catch(() => '') : '';
      if (jailed && root.startsWith(jailPrefix)) id = jailed;
    }
    if (id) found.push({ pid: Number(name), vmId: id, command: command.slice(0, 300) });
  }
  return found;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
