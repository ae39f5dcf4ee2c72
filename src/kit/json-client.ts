import { Agent, type Dispatcher, request } from 'undici';
import type { Readable } from 'node:stream';
import { NexusError } from './nexus-error.js';

export interface JsonClientOptions {
  baseUrl: string;
  /** Sent as `Authorization: Bearer`; a function is asked on every call (a credential that rotates). */
  bearer?: string | (() => string | undefined);
  /** Per-request deadline for headers and body. Default 10 s. */
  timeoutMs?: number;
  /** Trust this CA (PEM) for an https baseUrl instead of the system's roots. */
  ca?: Buffer;
  /** Sent as x-request-id, so one id follows a call across processes. */
  requestId?: () => string | undefined;
}

/**
 * A JSON client for a Nexus API. A non-2xx answer in the error contract becomes a NexusError
 * with the server's code, message and suggestion; a connection failure becomes `unavailable`.
 */
export class JsonClient {
  private readonly dispatcher: Dispatcher;
  private readonly timeoutMs: number;

  constructor(private readonly options: JsonClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.dispatcher = new Agent({
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connections: 8,
      ...(options.ca ? { connect: { ca: options.ca } } : {}),
    });
  }

  get baseUrl(): string {
    return this.options.baseUrl;
  }

  /** `timeoutMs`: this call's deadline for headers and body, when it may take longer than the client's. */
  async call<T>(method: Dispatcher.HttpMethod, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const { response, url } = await this.send(method, path, {
      body,
      accept: 'application/json',
      ...(timeoutMs === undefined ? {} : { headersTimeout: timeoutMs, bodyTimeout: timeoutMs }),
    });
    const text = await response.body.text();
    if (response.statusCode >= 200 && response.statusCode < 300) return parseJson(text) as T;
    throw errorOf(method, url, response.statusCode, text);
  }

  /**
   * A GET whose answer is read as it arrives (an event stream): the body, once the server
   * answered 2xx. A non-2xx answer throws as `call` does. Aborting `signal` ends the body.
   */
  async stream(path: string, options: { headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Readable> {
    const { response, url } = await this.send('GET', path, {
      accept: 'text/event-stream',
      headers: options.headers,
      signal: options.signal,
      // A stream may be quiet for long: only its keepalives bound the wait.
      bodyTimeout: 0,
    });
    if (response.statusCode >= 200 && response.statusCode < 300) return response.body;
    throw errorOf('GET', url, response.statusCode, await response.body.text());
  }

  private async send(
    method: Dispatcher.HttpMethod,
    path: string,
    options: { body?: unknown; accept: string; headers?: Record<string, string>; signal?: AbortSignal; headersTimeout?: number; bodyTimeout?: number },
  ): Promise<{ response: Dispatcher.ResponseData; url: URL }> {
    const headers: Record<string, string> = { ...options.headers, accept: options.accept };
    const bearer = typeof this.options.bearer === 'function' ? this.options.bearer() : this.options.bearer;
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const requestId = this.options.requestId?.();
    if (requestId) headers['x-request-id'] = requestId;
    const url = new URL(path, this.options.baseUrl);
    try {
      const response = await request(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        dispatcher: this.dispatcher,
        signal: options.signal,
        ...(options.headersTimeout === undefined ? {} : { headersTimeout: options.headersTimeout }),
        ...(options.bodyTimeout === undefined ? {} : { bodyTimeout: options.bodyTimeout }),
      });
      return { response, url };
    } catch (error) {
      throw new NexusError('unavailable', `cannot reach ${this.options.baseUrl}: ${describeNetworkError(error)}`, {
        cause: error,
        terminal: false,
        suggestion: isCertificateError(error)
          ? `The certificate of ${this.options.baseUrl} is not trusted here: give the CA that signed it (--ca or NEXUS_CA), and check it names this host.`
          : `Check that the server at ${this.options.baseUrl} is running and reachable.`,
      });
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/** A non-2xx answer as a NexusError: the server's own code, message and suggestion when it used the error contract. */
function errorOf(method: string, url: URL, status: number, text: string): NexusError {
  const contract = parseJson(text) as { error?: unknown; fault_message?: unknown; suggestion?: unknown } | undefined;
  if (contract && typeof contract.error === 'string') {
    const message = typeof contract.fault_message === 'string' ? contract.fault_message : contract.error;
    return new NexusError(contract.error, message, {
      suggestion: typeof contract.suggestion === 'string' ? contract.suggestion : undefined,
      terminal: status < 500,
    });
  }
  return new NexusError('unavailable', `${method} ${url.pathname} answered ${status} without an error body`, { terminal: false });
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describeNetworkError(error: unknown): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

/** True when the connection failed on the peer's certificate (unknown CA, wrong name, expired). */
function isCertificateError(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code ?? '';
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code);
}
