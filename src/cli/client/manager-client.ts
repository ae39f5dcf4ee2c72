import type { Host, HostList, JoinToken } from '../../contracts/host-api.js';
import type { Image, ImageListQuery } from '../../contracts/image-api.js';
import { JsonClient } from '../../kit/json-client.js';

/** The CLI's typed view of the manager API. */
export class ManagerClient {
  private readonly http: JsonClient;

  constructor(baseUrl: string, token?: string, ca?: Buffer) {
    this.http = new JsonClient({ baseUrl, ca, ...(token ? { bearer: token } : {}) });
  }

  listHosts(): Promise<HostList> {
    return this.http.call('GET', '/v1/hosts');
  }

  rotateHostCredential(hostId: string): Promise<Host> {
    return this.http.call('POST', `/v1/hosts/${encodeURIComponent(hostId)}/rotate-credential`);
  }

  listImages(query: ImageListQuery = {}): Promise<{ items: Image[] }> {
    const search = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
    return this.http.call('GET', `/v1/images${search.size > 0 ? `?${search}` : ''}`);
  }

  /** `replaceHost`: the ready host the token may replace (its agent is locked out). */
  mintJoinToken(ttlSeconds: number, replaceHost?: string): Promise<JoinToken> {
    return this.http.call('POST', '/v1/hosts/join-tokens', { ttl_seconds: ttlSeconds, ...(replaceHost === undefined ? {} : { replace_host: replaceHost }) });
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
