import type { IncomingHttpHeaders } from 'node:http';
import { Client, errors } from 'undici';
import { NexusError, messageOf } from '../../kit/nexus-error.js';
import { RELAYED_HEADERS, isRelayableHeaderValue } from '../domain/proxy-policy.js';

export interface RelayRequest {
  socket: string;
  method: 'GET' | 'PUT' | 'PATCH';
  /** Path and query as Firecracker should see them. */
  path: string;
  headers: IncomingHttpHeaders;
  body?: string;
  timeoutMs: number;
}

export interface RelayResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Response headers worth passing back: what the body is, and Firecracker's deprecation flag. */
const RETURNED_HEADERS = ['content-type', 'deprecation'];

/**
 * Relays one request to a VMM's API socket and answers what it said, status and body as they
 * were. No answer in time is `upstream_timeout` (504); no connection is `vmm_failed` (502).
 */
export async function relay(request: RelayRequest): Promise<RelayResponse> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || !RELAYED_HEADERS.has(name.toLowerCase())) continue;
    const text = Array.isArray(value) ? value.join(', ') : value;
    if (!isRelayableHeaderValue(text)) {
      throw new NexusError('bad_request', `the ${name} header holds control characters`, { suggestion: 'Send printable header values only.' });
    }
    headers[name.toLowerCase()] = text;
  }
  const client = new Client('http://localhost', {
    socketPath: request.socket,
    headersTimeout: request.timeoutMs,
    bodyTimeout: request.timeoutMs,
    connectTimeout: request.timeoutMs,
  });
  try {
    const response = await client.request({ method: request.method, path: request.path, headers, body: request.body });
    const body = Buffer.from(await response.body.arrayBuffer());
    const returned: Record<string, string> = {};
    for (const name of RETURNED_HEADERS) {
      const value = response.headers[name];
      if (typeof value === 'string') returned[name] = value;
    }
    return { status: response.statusCode, headers: returned, body };
  } catch (error) {
    if (error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError || error instanceof errors.ConnectTimeoutError) {
      throw new NexusError('upstream_timeout', `the VMM did not answer ${request.method} ${request.path} within ${request.timeoutMs} ms`, {
        suggestion: 'It may be busy with a long request (a snapshot); retry later.',
      });
    }
    throw new NexusError('vmm_failed', `could not reach the VMM at ${request.socket}: ${messageOf(error)}`, { cause: error });
  } finally {
    client.destroy().catch(() => undefined);
  }
}
