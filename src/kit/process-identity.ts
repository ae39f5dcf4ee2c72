import { readFile } from 'node:fs/promises';

/**
 * A process as (pid, start time in clock ticks since boot). A pid alone is reused by the kernel;
 * the pair names one process for as long as the machine is up.
 */
export interface ProcessIdentity {
  pid: number;
  startTicks: number;
}

/** Reads a live process's start time from /proc, or undefined when no such process runs (or it is a zombie). */
export async function readProcessStartTicks(pid: number): Promise<number | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // A zombie has exited; it only waits for its parent to reap it.
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  // Field 22 overall is starttime; after dropping pid and comm it is index 19.
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

export async function currentProcessIdentity(): Promise<ProcessIdentity> {
  const startTicks = await readProcessStartTicks(process.pid);
  if (startTicks === undefined) throw new Error(`cannot read /proc/${process.pid}/stat`);
  return { pid: process.pid, startTicks };
}

/** True when the process the identity names is still running (and is not a reused pid). */
export async function isProcessAlive(identity: ProcessIdentity): Promise<boolean> {
  return (await readProcessStartTicks(identity.pid)) === identity.startTicks;
}
