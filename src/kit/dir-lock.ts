import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ProcessIdentity, currentProcessIdentity, isProcessAlive } from './process-identity.js';
import { NexusError } from './nexus-error.js';

const LOCK_FILE = 'nexus.lock';

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

/**
 * Takes an exclusive lock on a directory for this process: `<dir>/nexus.lock` holds our pid and
 * start time. A lock left by a dead process (kill -9, power loss) is taken over at once, because
 * its owner is checked by pid *and* start time; time-based staleness (as mkdir locks use) would
 * either block a restart or steal the lock of a live but slow owner.
 *
 * Must stay true: only one process at a time opens an embedded database in the directory (or
 * runs an agent on a run dir, or builds one image). `suggestion` tells the refused process what to
 * do instead; the default is the embedded database's.
 */
export async function lockDirectory(dir: string, purpose: string, options: { suggestion?: (ownerPid: number) => string } = {}): Promise<DirLock> {
  const path = join(dir, LOCK_FILE);
  const me = await currentProcessIdentity();
  for (let attempt = 0; attempt < 3; attempt++) {
    // Write the whole lock aside, then link it into place: link() fails if the lock exists, and
    // a reader never sees a half-written lock.
    const staged = `${path}.${me.pid}`;
    await writeFile(staged, JSON.stringify({ pid: me.pid, start_ticks: me.startTicks, purpose }), { mode: 0o600 });
    try {
      await link(staged, path);
      return { path, release: () => releaseIfOurs(path, me) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      await unlink(staged);
    }
    const owner = await readOwner(path);
    if (owner && (await isProcessAlive(owner))) {
      throw new NexusError('conflict', `${dir} is locked by process ${owner.pid} (${owner.purpose ?? 'unknown'})`, {
        suggestion:
          options.suggestion?.(owner.pid) ??
          `Stop process ${owner.pid} first, or give this one another data dir (NEXUS_DATA_DIR). Two processes on one embedded database corrupt it.`,
      });
    }
    // The owner is gone: remove its lock and try again. A racing taker loses at link().
    await unlink(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
  throw new NexusError('conflict', `could not take the lock on ${dir}: another process keeps taking it`);
}

interface LockOwner extends ProcessIdentity {
  purpose?: string;
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as { pid?: unknown; start_ticks?: unknown; purpose?: unknown };
    if (typeof parsed.pid !== 'number' || typeof parsed.start_ticks !== 'number') return undefined;
    return { pid: parsed.pid, startTicks: parsed.start_ticks, purpose: typeof parsed.purpose === 'string' ? parsed.purpose : undefined };
  } catch {
    // Unreadable: a lock is linked into place whole, so this one was damaged; treat it as abandoned.
    return undefined;
  }
}

async function releaseIfOurs(path: string, me: ProcessIdentity): Promise<void> {
  const owner = await readOwner(path);
  if (owner?.pid === me.pid && owner.startTicks === me.startTicks) await unlink(path);
}
