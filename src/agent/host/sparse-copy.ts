import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Copies a disk image keeping its holes (a 16 MiB ext4 image holds a few hundred KiB of data):
 * coreutils' `cp --sparse=always`, which also uses reflinks where the filesystem has them.
 */
export async function copySparse(source: string, destination: string): Promise<void> {
  try {
    await run('cp', ['--sparse=always', '--', source, destination]);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`copying ${source} to ${destination}: ${stderr || (error as Error).message}`, { cause: error });
  }
}
