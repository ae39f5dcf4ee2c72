/**
 * Carries "reconcile this VM now" between the managers of one database: an API write on a
 * follower reaches the leader's work queue at once instead of at its next resync.
 */
export interface WakeChannel {
  /** Tells every manager (the leader among them) that the VM changed. Never throws. */
  publish(vmId: string, userAction: boolean): void;
  /** Starts delivering what any manager publishes to `onWake`. */
  start(onWake: (vmId: string, userAction: boolean) => void): Promise<void>;
  stop(): Promise<void>;
}
