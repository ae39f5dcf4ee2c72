import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { NexusError } from './nexus-error.js';

export interface KeyFile {
  key: Buffer;
  /** True when this call made the file (there was none). */
  created: boolean;
  /** True when group or others may read it (the caller decides whether to warn or refuse). */
  exposed: boolean;
}

/**
 * Reads a key of `bytes` random bytes kept as one line of base64 in `path`, making it (mode 0600,
 * its directory 0700 when new) when there is none. Two processes starting at once end with the
 * same key: the new file is written aside and linked into place, and link() fails if another got
 * there first, whose key is then read.
 */
export async function loadOrCreateKeyFile(path: string, bytes: number): Promise<KeyFile> {
  const existing = await readKeyFile(path, bytes);
  if (existing) return { ...existing, created: false };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // Named per call, not per process: two callers in one process must not share it either.
  const staged = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  await writeFile(staged, `${randomBytes(bytes).toString('base64')}\n`, { mode: 0o600 });
  let created = true;
  try {
    await link(staged, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new NexusError('bad_request', `cannot create the key file ${path}: ${(error as Error).message}`, { cause: error });
    created = false;
  } finally {
    await unlink(staged);
  }
  const made = await readKeyFile(path, bytes);
  if (!made) throw new NexusError('internal', `the key file ${path} vanished while it was being made`);
  return { ...made, created };
}

/** Reads the key of `bytes` bytes kept in `path` (see loadOrCreateKeyFile); undefined when there is no such file. */
export async function readKeyFile(path: string, bytes: number): Promise<Omit<KeyFile, 'created'> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new NexusError('bad_request', `cannot read the key file ${path}: ${(error as Error).message}`, { cause: error });
  }
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, 'base64');
  // Buffer.from skips characters that are not base64: insist the text was nothing else.
  if (key.length !== bytes || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    throw new NexusError('bad_request', `the key file ${path} does not hold ${bytes} bytes in base64`, {
      suggestion: `Restore the file the database was first used with; a new one is made with \`openssl rand -base64 ${bytes}\`, but only for a database that holds no sealed secret yet.`,
    });
  }
  const mode = (await stat(path)).mode;
  return { key, exposed: (mode & 0o077) !== 0 };
}
