export interface NexusErrorOptions {
  /** What to tell the caller in words. Defaults to the message. */
  faultMessage?: string;
  /** What the caller can do about it. */
  suggestion?: string;
  /** True when retrying cannot help (bad input, missing thing). */
  terminal?: boolean;
  /** When a retry may succeed (a rate limit): sent as `Retry-After` and `retry_after`. */
  retryAfterSeconds?: number;
  cause?: unknown;
}

/**
 * An error with a stable `code` that survives a wire. Codes map to HTTP statuses only at the HTTP
 * edge; everything below it throws and rethrows with context, keeping the cause.
 */
export class NexusError extends Error {
  readonly code: string;
  readonly faultMessage: string;
  readonly suggestion: string | undefined;
  readonly terminal: boolean;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: string, message: string, options: NexusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NexusError';
    this.code = code;
    this.faultMessage = options.faultMessage ?? message;
    this.suggestion = options.suggestion;
    this.terminal = options.terminal ?? true;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** The message of anything thrown, for log lines and rethrows. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
