import { type Dispatcher, request } from 'undici';

export interface ManagerAnswer {
  status: number;
  /** The JSON body; plain text (a Prometheus scrape) as a string. */
  json: any;
  /** How long the call took, from sending to the whole body read. */
  ms: number;
}

/**
 * Calls a manager as a bench client does: over one connection pool, with a bearer token that can
 * be set once the manager has minted it.
 */
export class ManagerCaller {
  private auth: Record<string, string> = {};

  constructor(private readonly dispatcher: Dispatcher) {}

  useToken(token: string): void {
    this.auth = { authorization: `Bearer ${token}` };
  }

  async call(method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<ManagerAnswer> {
    const started = performance.now();
    const response = await request(url, {
      method,
      dispatcher: this.dispatcher,
      headers: { ...this.auth, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.body.text();
    return { status: response.statusCode, json: text && text.startsWith('{') ? JSON.parse(text) : text || undefined, ms: performance.now() - started };
  }
}
