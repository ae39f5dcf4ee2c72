import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { which } from '../host-requirements.js';

/**
 * Where a VMM process lives besides its own session: a transient systemd scope (`fc-<id>.scope`)
 * where systemd is PID 1, else a cgroup v2 group of its own (`nexus/fc-<id>`) where the cgroup
 * tree is writable, else nowhere in particular.
 */
export type ProcessPlacement = { kind: 'systemd-scope'; systemdRun: string } | { kind: 'cgroup'; root: string } | { kind: 'none' };

/** Picks the placement this host supports; called once by the composition root. */
export async function detectPlacement(): Promise<ProcessPlacement> {
  const init = await readFile('/proc/1/comm', 'utf8').catch(() => '');
  const systemdRun = init.trim() === 'systemd' ? await which('systemd-run') : undefined;
  if (systemdRun) return { kind: 'systemd-scope', systemdRun };
  const root = await cgroup2Mount();
  if (root) {
    try {
      await mkdir(join(root, 'nexus'), { recursive: true });
      return { kind: 'cgroup', root };
    } catch {
      // read-only cgroup tree (an unprivileged container): no group of our own
    }
  }
  return { kind: 'none' };
}

/** The command that starts `binary` in a transient scope named after the VM. */
export function scopedCommand(placement: ProcessPlacement, vmId: string, binary: string, args: string[]): { binary: string; args: string[] } {
  if (placement.kind !== 'systemd-scope') return { binary, args };
  // `systemd-run --scope` registers the scope, then execs the command: the pid stays the VMM's.
  return { binary: placement.systemdRun, args: ['--scope', '--quiet', '--collect', `--unit=fc-${vmId}`, '--', binary, ...args] };
}

/** Moves a freshly started process into `nexus/fc-<id>` (cgroup placement only). */
export async function enterCgroup(placement: ProcessPlacement, vmId: string, pid: number): Promise<string | undefined> {
  if (placement.kind !== 'cgroup') return undefined;
  const group = join(placement.root, 'nexus', `fc-${vmId}`);
  await mkdir(group, { recursive: true });
  await writeFile(join(group, 'cgroup.procs'), String(pid));
  return group;
}

/** Removes the VM's empty cgroup after its process is gone. */
export async function leaveCgroup(placement: ProcessPlacement, vmId: string): Promise<void> {
  if (placement.kind !== 'cgroup') return;
  const group = join(placement.root, 'nexus', `fc-${vmId}`);
  // The kernel keeps a group busy for a moment after its last process exits (until it is reaped).
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(group);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function cgroup2Mount(): Promise<string | undefined> {
  const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return mounts
    .split('\n')
    .map((line) => line.split(' '))
    .find((fields) => fields[2] === 'cgroup2')?.[1];
}
