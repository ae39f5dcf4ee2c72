import { readFile, readdir, stat } from 'node:fs/promises';

/** A process whose root directory (chroot or pivot_root) is one of the directories asked about. */
export interface RootedProcess {
  pid: number;
  /** Its real, effective, saved and filesystem uids (/proc/<pid>/status). */
  uids: number[];
}

/**
 * The live processes whose root directory is one of `dirs`, by directory. Roots are compared by
 * identity (device and inode, through `/proc/<pid>/root`), never by the link's text: a process
 * that did pivot_root in a mount namespace of its own (as Firecracker's jailer does) reads as `/`
 * from outside, and a root removed since reads with " (deleted)". A process that exits while
 * looked at is skipped; one whose root cannot be read (not ours to inspect) too.
 */
export async function processesRootedIn(dirs: readonly string[]): Promise<Map<string, RootedProcess[]>> {
  const byIdentity = new Map<string, string>();
  for (const dir of dirs) {
    const identity = await identityOf(dir);
    if (identity !== undefined) byIdentity.set(identity, dir);
  }
  const found = new Map<string, RootedProcess[]>();
  if (byIdentity.size === 0) return found;
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const identity = await identityOf(`/proc/${name}/root`);
    const dir = identity === undefined ? undefined : byIdentity.get(identity);
    if (dir === undefined) continue;
    const uids = await uidsOf(Number(name));
    if (uids === undefined) continue;
    found.set(dir, [...(found.get(dir) ?? []), { pid: Number(name), uids }]);
  }
  return found;
}

/** Whether the process's root directory is `dir` (by identity, as in {@link processesRootedIn}). */
export async function isRootedAt(pid: number, dir: string): Promise<boolean> {
  const [root, wanted] = await Promise.all([identityOf(`/proc/${pid}/root`), identityOf(dir)]);
  return root !== undefined && root === wanted;
}

async function identityOf(path: string): Promise<string | undefined> {
  try {
    const info = await stat(path, { bigint: true });
    return info.isDirectory() ? `${info.dev}:${info.ino}` : undefined;
  } catch {
    return undefined;
  }
}

async function uidsOf(pid: number): Promise<number[] | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const line = status && /^Uid:\s+(.*)$/m.exec(status)?.[1];
  return line ? line.trim().split(/\s+/).map(Number) : undefined;
}
