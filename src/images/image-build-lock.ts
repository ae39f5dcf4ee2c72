import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DirLock, lockDirectory } from '../kit/dir-lock.js';
import { NexusError, messageOf } from '../kit/nexus-error.js';

const RETRY_INTERVAL_MS = 500;

/**
 * Takes the lock that lets one process at a time build (or replace) the image `name` under
 * `imagesDir`, waiting up to `waitMs` for another builder to finish: `nexus dev` and a CLI build,
 * or two test processes, then share one build instead of racing. A lock whose owner died is taken
 * over at once (see `lockDirectory`).
 */
export async function lockImageBuild(imagesDir: string, name: string, waitMs: number, onWait: (line: string) => void): Promise<DirLock> {
  const dir = join(imagesDir, '.locks', name);
  await mkdir(dir, { recursive: true });
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      return await lockDirectory(dir, `building image ${name}`);
    } catch (error) {
      if (!(error instanceof NexusError) || error.code !== 'conflict') throw error;
      if (Date.now() >= deadline) {
        throw new NexusError('conflict', `image ${name} is still being built by another process after ${Math.round(waitMs / 1000)} s (${messageOf(error)})`, {
          terminal: false,
          suggestion: 'Wait for the other build to finish, or stop it and try again.',
        });
      }
      if (!told) onWait(`waiting for another build of image ${name} to finish`);
      told = true;
      await sleep(RETRY_INTERVAL_MS);
    }
  }
}
