import { readFile } from 'node:fs/promises';

/** The last lines of a log joined on one line, for error messages ("(no log)" when unreadable). */
export async function lastLines(path: string, count = 5): Promise<string> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return text.split('\n').slice(-count).join(' | ') || '(no output)';
  } catch {
    return '(no log)';
  }
}
