import type { HostList, JoinToken } from '../../contracts/host-api.js';
import type { Image, ImageListQuery } from '../../contracts/image-api.js';
import { JsonClient } from '../../kit/json-client.js';

/** The CLI's typed view of the manager API. */
export class ManagerClient {
  private readonly http: JsonClient;

  constructor(baseUrl: string, token?: string) {
    this.http = new JsonClient({ baseUrl, ...(token ? { bearer: token } : {}) });
  }

  listHosts(): Promise<HostList> {
    return this.http.call('GET', '/v1/hosts');
  }

  listImages(query: ImageListQuery = {}): Promise<{ items: Image[] }> {
    const search = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
    return this.http.call('GET', `/v1/images${search.size > 0 ? `?${search}` : ''}`);
  }

  mintJoinToken(ttlSeconds: number): Promise<JoinToken> {
    return this.http.call('POST', '/v1/hosts/join-tokens', { ttl_seconds: ttlSeconds });
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
