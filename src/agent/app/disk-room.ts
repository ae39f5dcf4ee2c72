import { NexusError } from '../../kit/nexus-error.js';
import type { VmStore } from '../ports/vm-store.js';

export const MIB = 2 ** 20;

/** A size in whole MiB, for messages. */
export function mib(bytes: number): string {
  return `${Math.floor(bytes / MIB)} MiB`;
}

/** What to do about a disk too full for a capture (a snapshot, a hibernation). */
export const FREE_SPACE_SUGGESTION = "Free space in the agent's run dir (GET /agent/v1/capacity shows it), or delete older snapshots, and try again.";

/**
 * Refuses (507) work that may write `neededBytes` under `where` when its disk has less free: checked
 * before the guest is paused, so a refusal leaves it as it was. `what` and `because` say what needs it.
 */
export async function requireRoom(store: Pick<VmStore, 'freeSpace'>, where: string, neededBytes: number, what: string, because: string): Promise<void> {
  const free = await store.freeSpace(where);
  if (free >= neededBytes) return;
  throw new NexusError('insufficient_storage', `the disk holding ${where} has ${mib(free)} free; ${what} may need ${mib(neededBytes)} (${because})`, {
    suggestion: FREE_SPACE_SUGGESTION,
    terminal: false,
  });
}
