import { readFile } from 'node:fs/promises';
import type { ProcessIdentity } from '../../../kit/process-identity.js';

/**
 * Reads `<run-dir>/vms/<id>/pid`: `{"pid": N, "start_ticks": M}`. The start time is what keeps a
 * reused pid from being mistaken for the VMM. Undefined when absent or unreadable.
 */
export async function readPidFile(path: string): Promise<ProcessIdentity | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as { pid?: unknown; start_ticks?: unknown };
    if (typeof parsed.pid === 'number' && typeof parsed.start_ticks === 'number') {
      return { pid: parsed.pid, startTicks: parsed.start_ticks };
    }
  } catch {
    // absent or damaged: no live VMM can be claimed from it
  }
  return undefined;
}
