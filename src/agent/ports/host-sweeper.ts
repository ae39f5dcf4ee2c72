/**
 * Ends everything a run dir has on the host except its VM folders: every VMM running from it (by
 * pid, strays included), then the guest network. For an agent whose VMs end with it.
 */
export interface HostSweeper {
  /** Kills every VMM of the run dir, forgets their pid files, removes the guest network; answers how many VMMs it killed. */
  sweep(): Promise<number>;
}
