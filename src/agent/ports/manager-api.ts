import type { EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse } from '../../contracts/host-api.js';

/** The manager's host registry, as the agent calls it. */
export interface ManagerApi {
  enroll(request: EnrollRequest): Promise<EnrollResponse>;
  heartbeat(hostId: string, request: HeartbeatRequest): Promise<HeartbeatResponse>;
  /** Ends its connections. */
  close(): Promise<void>;
}

/** Opens the manager's API: `bearer` is asked on every call (a credential that rotates is used from the next call on). */
export type ConnectManager = (options: { bearer?: () => string; timeoutMs?: number }) => ManagerApi;
