import { access, rename, writeFile } from 'node:fs/promises';

/**
 * Writes a file so that readers see the old content or the new, never half of it: the text goes
 * to a staged file beside it (named per process, so two writers never share one) and is renamed
 * into place.
 */
export async function writeFileAtomically(path: string, text: string | Uint8Array, mode: number): Promise<void> {
  const staged = `${path}.${process.pid}.tmp`;
  await writeFile(staged, text, { mode });
  await rename(staged, path);
}

/** Whether anything exists at the path (a dangling symlink does not count). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
