import { chown, link, copyFile, lstat, mkdir, readdir, realpath, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { VM_ID_PATTERN } from '../../../contracts/vm-layout.js';
import { processesRootedIn } from '../../../kit/process-root.js';
import type { IdRange } from '../../domain/id-range.js';

/** How to run Firecracker through its jailer (chroot, uid/gid, cgroup v2). Optional. */
export interface JailerConfig {
  /** The `jailer` binary. */
  binary: string;
  /** Each VM's uid, and its gid (the same number): one of its own from this range (see JailUsers). */
  uidRange: IdRange;
  /** `--chroot-base-dir`; must exist. The agent uses `<run-dir>/jail` unless told otherwise. */
  chrootBaseDir: string;
  /** `--netns`: a network namespace path to join (its TAPs must be made in it beforehand). */
  netns?: string;
}

/** Where one jailed launch lives. Every path sent to that process's API is relative to `root`. */
export interface JailLayout {
  /**
   * `--id`: fresh per launch, so each launch starts from a root of its own (the jailer reuses a
   * folder that exists, device nodes included) and a cgroup named after it.
   */
  id: string;
  /** `<base>/<exec file name>/<id>`: what the agent removes afterwards (the jailer cleans nothing). */
  dir: string;
  root: string;
  /** The API socket as the host sees it (`--api-sock /fc.sock` inside: a short host path). */
  socket: string;
}

/** Who one VM's jailed Firecracker runs as: ids no other VM holds. */
export interface JailUser {
  uid: number;
  gid: number;
}

/** A launch's suffix to the VM id in a jail id, as the driver makes it (a timestamp in base 36). */
export const JAIL_LAUNCH_PATTERN = /^[a-z0-9]{1,20}$/;

/** The jail of one launch of VM `vmId`; `launch` (e.g. a timestamp in base 36) makes the id fresh. */
export function jailLayout(config: Pick<JailerConfig, 'chrootBaseDir'>, firecrackerBinary: string, vmId: string, launch: string): JailLayout {
  const id = `${vmId}-${launch}`;
  if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new Error(`jailer id ${id} must be 1-64 letters, digits or '-'`);
  const exec = basename(firecrackerBinary);
  const dir = join(config.chrootBaseDir, exec, id);
  const root = join(dir, 'root');
  return { id, dir, root, socket: join(root, 'fc.sock') };
}

/**
 * The jailer's argv. Plain mode (no --daemonize, no --new-pid-ns): the jailer execs Firecracker in
 * place, so the pid the supervisor sees is Firecracker's, and its exit status is Firecracker's.
 * (Hence no `<exec name>.pid` in the jail: the jailer writes one only with --new-pid-ns.)
 */
/** `netns`: the VM's own namespace, where its TAP is; else the agent-wide one configured, if any. */
export function jailerArgs(config: JailerConfig, firecrackerBinary: string, jail: JailLayout, user: JailUser, netns = config.netns): string[] {
  return [
    '--id',
    jail.id,
    '--exec-file',
    firecrackerBinary,
    '--uid',
    String(user.uid),
    '--gid',
    String(user.gid),
    '--chroot-base-dir',
    config.chrootBaseDir,
    '--cgroup-version',
    '2',
    ...(netns ? ['--netns', netns] : []),
    '--',
    '--api-sock',
    '/fc.sock',
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
export async function populateJail(user: JailUser, jail: JailLayout, files: readonly JailedFile[]): Promise<void> {
  await mkdir(jail.root, { recursive: true, mode: 0o755 });
  for (const file of files) {
    const target = join(jail.root, file.jailPath);
    await mkdir(join(target, '..'), { recursive: true, mode: 0o755 });
    await link(file.hostPath, target).catch(async (error: NodeJS.ErrnoException) => {
      // A copy of a writable file would take the guest's writes away from the VM's own file.
      if (error.code !== 'EXDEV' || file.writable) {
        throw new Error(
          `cannot link ${file.hostPath} into the jail at ${target}: ${error.message}${error.code === 'EXDEV' ? ' (put the chroot base on the run dir filesystem)' : ''}`,
        );
      }
      await copyFile(file.hostPath, target);
    });
    if (file.writable) await chown(target, user.uid, user.gid);
  }
  await chown(jail.root, user.uid, user.gid);
}

/** Removes a launch's jail (the jailer leaves it behind). */
export async function removeJail(jail: Pick<JailLayout, 'dir'>): Promise<void> {
  await rm(jail.dir, { recursive: true, force: true });
}

/** A jail found on disk: whose VM it was made for, the uid its root belongs to (the jailed user's), and what runs in it. */
export interface FoundJail {
  vmId: string;
  dir: string;
  rootUid: number;
  /** Whether a process (its Firecracker) has the jail's root as its root directory. */
  running: boolean;
  /** The uids of the processes running in it (empty when none runs). */
  processUids: number[];
}

/**
 * Every jail this driver could have made under the chroot base: `<base>/<exec name>/<vm id>-<launch>`,
 * each a real folder (no link anywhere on the way, so none leads outside the base) with a `root`
 * folder in it. What these find may be removed with `rm -r`: anything else there is left alone.
 */
export async function listJails(config: Pick<JailerConfig, 'chrootBaseDir'>, firecrackerBinary: string): Promise<FoundJail[]> {
  const execDir = join(config.chrootBaseDir, basename(firecrackerBinary));
  const base = await realpath(config.chrootBaseDir).catch(() => undefined);
  const execInfo = await lstat(execDir).catch(() => undefined);
  if (base === undefined || !execInfo?.isDirectory() || (await realpath(execDir)) !== join(base, basename(firecrackerBinary))) return [];
  const jails: Array<{ vmId: string; dir: string; rootUid: number }> = [];
  for (const name of (await readdir(execDir)).sort()) {
    const vmId = name.slice(0, 36);
    if (!VM_ID_PATTERN.test(vmId) || name[36] !== '-' || !JAIL_LAUNCH_PATTERN.test(name.slice(37))) continue;
    const dir = join(execDir, name);
    const [jail, root] = await Promise.all([lstat(dir).catch(() => undefined), lstat(join(dir, 'root')).catch(() => undefined)]);
    if (!jail?.isDirectory() || !root?.isDirectory()) continue;
    jails.push({ vmId, dir, rootUid: root.uid });
  }
  // Running means a process has the jail's root as its own root: it cannot fake that, and unlike a
  // pid file (the jailer writes one only with --new-pid-ns, which the driver does not pass) it is
  // always there to see.
  const inJails = await processesRootedIn(jails.map((jail) => join(jail.dir, 'root')));
  return jails.map((jail) => {
    const processes = inJails.get(join(jail.dir, 'root')) ?? [];
    return { ...jail, running: processes.length > 0, processUids: [...new Set(processes.flatMap((process) => process.uids))] };
  });
}
