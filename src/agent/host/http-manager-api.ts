import type { EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse } from '../../contracts/host-api.js';
import { JsonClient } from '../../kit/json-client.js';
import type { ConnectManager, ManagerApi } from '../ports/manager-api.js';

/** The manager's API over HTTP(S), trusting `ca` for an https manager (default: the system's roots). */
export function httpManager(managerUrl: string, ca: Buffer | undefined): ConnectManager {
  return (options) => new HttpManagerApi(new JsonClient({ baseUrl: managerUrl, ca, ...options }));
}

class HttpManagerApi implements ManagerApi {
  constructor(private readonly client: JsonClient) {}

  enroll(request: EnrollRequest): Promise<EnrollResponse> {
    return this.client.call<EnrollResponse>('POST', '/v1/hosts/enroll', request);
  }

  heartbeat(hostId: string, request: HeartbeatRequest): Promise<HeartbeatResponse> {
    return this.client.call<HeartbeatResponse>('POST', `/v1/hosts/${hostId}/heartbeat`, request);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
