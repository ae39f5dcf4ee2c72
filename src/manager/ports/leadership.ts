/**
 * Whether this manager may run the loops that must run once per cluster (the reconciler, host
 * liveness). Several managers may serve the API; one leads.
 */
export interface Leadership {
  isLeader(): boolean;
  start(): void;
  stop(): Promise<void>;
}
