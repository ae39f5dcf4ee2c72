import { chown, link, copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';

/** How to run Firecracker through its jailer (chroot, uid/gid, cgroup v2). Optional. */
export interface JailerConfig {
  /** The `jailer` binary. */
  binary: string;
  uid: number;
  gid: number;
  /** `--chroot-base-dir`; must exist. The agent uses `<run-dir>/jail` unless told otherwise. */
  chrootBaseDir: string;
  /** `--netns`: a network namespace path to join (its TAPs must be made in it beforehand). */
  netns?: string;
}

/** Where one jailed launch lives. Every path sent to that process's API is relative to `root`. */
export interface JailLayout {
  /** `--id`: fresh per launch, because the jailer creates its pid file exclusively. */
  id: string;
  /** `<base>/<exec file name>/<id>`: what the agent removes afterwards (the jailer cleans nothing). */
  dir: string;
  root: string;
  /** The API socket as the host sees it (`--api-sock /fc.sock` inside: a short host path). */
  socket: string;
  /** Firecracker's pid (host view), written by the jailer. */
  pidFile: string;
}

/** The jail of one launch of VM `vmId`; `launch` (e.g. a timestamp in base 36) makes the id fresh. */
export function jailLayout(config: Pick<JailerConfig, 'chrootBaseDir'>, firecrackerBinary: string, vmId: string, launch: string): JailLayout {
  const id = `${vmId}-${launch}`;
  if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new Error(`jailer id ${id} must be 1-64 letters, digits or '-'`);
  const exec = basename(firecrackerBinary);
  const dir = join(config.chrootBaseDir, exec, id);
  const root = join(dir, 'root');
  return { id, dir, root, socket: join(root, 'fc.sock'), pidFile: join(root, `${exec}.pid`) };
}

/**
 * The jailer's argv. Plain mode (no --daemonize, no --new-pid-ns): the jailer execs Firecracker in
 * place, so the pid the supervisor sees is Firecracker's, and its exit status is Firecracker's.
 */
export function jailerArgs(config: JailerConfig, firecrackerBinary: string, jail: JailLayout): string[] {
  return [
    '--id', jail.id,
    '--exec-file', firecrackerBinary,
    '--uid', String(config.uid),
    '--gid', String(config.gid),
    '--chroot-base-dir', config.chrootBaseDir,
    '--cgroup-version', '2',
    ...(config.netns ? ['--netns', config.netns] : []),
    '--',
    '--api-sock', '/fc.sock',
  ];
}

/** A host file as the jailed process sees it, and whether the jailed user must be able to write it. */
export interface JailedFile {
  hostPath: string;
  /** Absolute inside the jail, e.g. `/vm/rootfs`. */
  jailPath: string;
  writable: boolean;
}

/**
 * Puts the VM's files into the jail before launch: hard links (a writable disk then stays the VM's
 * own file); read-only files are copied where the jail is on another filesystem, writable ones refused. Only writable files
 * change owner to the jailed uid:gid; read-only ones (image-store kernels) keep theirs and must be
 * world-readable, so an image shared by many VMs is never handed to one of them.
 */
export async function populateJail(config: Pick<JailerConfig, 'uid' | 'gid'>, jail: JailLayout, files: readonly JailedFile[]): Promise<void> {
  await mkdir(jail.root, { recursive: true, mode: 0o755 });
  for (const file of files) {
    const target = join(jail.root, file.jailPath);
    await mkdir(join(target, '..'), { recursive: true, mode: 0o755 });
    await link(file.hostPath, target).catch(async (error: NodeJS.ErrnoException) => {
      // A copy of a writable file would take the guest's writes away from the VM's own file.
      if (error.code !== 'EXDEV' || file.writable) {
        throw new Error(`cannot link ${file.hostPath} into the jail at ${target}: ${error.message}${error.code === 'EXDEV' ? ' (put the chroot base on the run dir filesystem)' : ''}`);
      }
      await copyFile(file.hostPath, target);
    });
    if (file.writable) await chown(target, config.uid, config.gid);
  }
  await chown(jail.root, config.uid, config.gid);
}

/** Removes a launch's jail (the jailer leaves it behind). */
export async function removeJail(jail: Pick<JailLayout, 'dir'>): Promise<void> {
  await rm(jail.dir, { recursive: true, force: true });
}
