import { readFile, readdir, realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type ProcessIdentity, readProcessStartTicks } from '../../../kit/process-identity.js';
import { isRootedAt } from '../../../kit/process-root.js';
import type { VmmProcess, VmmProcessFinder } from '../../ports/vmm-processes.js';

export type { VmmProcess } from '../../ports/vmm-processes.js';

/** The VMMs of a run dir (and its jails) in this machine's /proc. */
export class ProcVmmProcessFinder implements VmmProcessFinder {
  constructor(
    private readonly runDir: string,
    private readonly jailBase?: string,
  ) {}

  scan(): Promise<VmmProcess[]> {
    return scanVmmProcesses(this.runDir, this.jailBase);
  }

  async identify(pid: number): Promise<ProcessIdentity | undefined> {
    const startTicks = await readProcessStartTicks(pid);
    return startTicks === undefined ? undefined : { pid, startTicks };
  }
}

const VMM_BINARY = /(^|\/)(qemu-system-[a-z0-9_]+|firecracker|jailer)$/;
const VM_ID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
/** A jail id as the Firecracker driver makes it: `<vm id>-<launch>`. */
const JAIL_ID = new RegExp(`^(${VM_ID})-[a-z0-9]{1,20}$`);

/**
 * Every VMM process on the host that belongs to this run dir: the ones Nexus started, whether or
 * not a pid file still names them.
 *
 * - Unjailed, a VMM names its VM folder in its command line: some argument is a path
 *   `<run-dir>/vms/<id>/…`, or holds one after `=`, `,` or `:` (QEMU's `file=…`, `path=…`,
 *   `unix:…`). Only there: `/data/srv/fc/vms/<id>/` does not belong to run dir `/srv/fc`.
 * - Jailed, Firecracker names only paths inside its jail: it carries `--id <vm id>-<launch>` (or
 *   `--id=…`, as the jailer passes it) and its root directory is that jail's root,
 *   `<jailBase>/<exec name>/<id>/root`, compared by identity (its root cannot be faked, and reads
 *   as `/` from outside after the jailer's pivot_root).
 */
export async function scanVmmProcesses(runDir: string, jailBase?: string): Promise<VmmProcess[]> {
  const inFolders = vmFolderPattern(runDir);
  const execDirs = jailBase ? await jailExecDirs(jailBase) : [];
  const found: VmmProcess[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    } catch {
      continue; // exited while we looked
    }
    const command = argv.join(' ').slice(0, 300);
    const unjailed = argv[0] && VMM_BINARY.test(argv[0]) ? argv.map((arg) => inFolders.exec(arg)?.[1]).find((id) => id !== undefined) : undefined;
    if (unjailed) {
      found.push({ pid: Number(name), vmId: unjailed, command });
      continue;
    }
    const jailId = execDirs.length > 0 ? jailIdOf(argv) : undefined;
    if (!jailId) continue;
    for (const execDir of execDirs) {
      if (await isRootedAt(Number(name), join(execDir, jailId, 'root'))) {
        found.push({ pid: Number(name), vmId: jailId.slice(0, 36), command });
        break;
      }
    }
  }
  return found;
}

/** Matches an argument naming `<run-dir>/vms/<id>/…` at its start or after `=`, `,` or `:`; group 1 is the id. */
export function vmFolderPattern(runDir: string): RegExp {
  const marker = `${resolve(runDir).replace(/\/+$/, '')}/vms/`;
  return new RegExp(`(?:^|[=,:])${escapeRegExp(marker)}(${VM_ID})/`);
}

/** The jail id a process was given (`--id <id>` or `--id=<id>`), when it has the driver's shape. */
function jailIdOf(argv: string[]): string | undefined {
  for (const [index, arg] of argv.entries()) {
    const value = arg === '--id' ? argv[index + 1] : arg.startsWith('--id=') ? arg.slice('--id='.length) : undefined;
    if (value !== undefined && JAIL_ID.test(value)) return value;
  }
  return undefined;
}

/** The folders under the chroot base the jailer made for exec files (`<base>/<exec name>`). */
async function jailExecDirs(jailBase: string): Promise<string[]> {
  const base = await realpath(jailBase).catch(() => undefined);
  if (base === undefined) return [];
  const entries = await readdir(base, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isDirectory()).map((entry) => join(base, entry.name));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
