import { Client } from 'undici';
import { KeyedMutex } from '../../../kit/keyed-mutex.js';
import { NexusError, messageOf } from '../../../kit/nexus-error.js';
import type { FirecrackerRequest } from './firecracker-requests.js';

/**
 * Firecracker's API over its unix socket. Calls to one socket are serialized (Firecracker runs one
 * request at a time and answers when the action is done). Its refusals (400 `{fault_message}`, or
 * `{error}` from its HTTP layer) become `vmm_failed` with Firecracker's own words.
 */
export class FirecrackerApi {
  private readonly queues = new KeyedMutex();

  constructor(private readonly timeoutMs: number) {}

  call<T = unknown>(socketPath: string, request: FirecrackerRequest, timeoutMs = this.timeoutMs): Promise<T> {
    return this.queues.run(socketPath, () => this.send<T>(socketPath, request, timeoutMs));
  }

  private async send<T>(socketPath: string, request: FirecrackerRequest, timeoutMs: number): Promise<T> {
    const client = new Client('http://localhost', { socketPath, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs });
    try {
      const body = request.body === undefined ? undefined : JSON.stringify(request.body);
      let response;
      try {
        response = await client.request({
          method: request.method,
          path: request.path,
          headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body,
        });
      } catch (error) {
        throw new NexusError('unavailable', `Firecracker's API at ${socketPath} did not answer ${request.method} ${request.path}: ${messageOf(error)}`, {
          cause: error,
          terminal: false,
        });
      }
      const text = await response.body.text();
      if (response.statusCode >= 200 && response.statusCode < 300) return (text ? JSON.parse(text) : undefined) as T;
      throw new NexusError('vmm_failed', `Firecracker refused ${request.method} ${request.path}: ${faultOf(text, response.statusCode)}`);
    } finally {
      await client.close().catch(() => undefined);
    }
  }
}

/** Firecracker's reason: `fault_message` from the API layer, `error` from its HTTP layer, else the raw text. */
export function faultOf(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text) as { fault_message?: unknown; error?: unknown };
    if (typeof parsed.fault_message === 'string') return parsed.fault_message;
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    // Firecracker's HTTP layer may answer with something that is not strict JSON.
  }
  return text.trim() || `status ${status}`;
}
