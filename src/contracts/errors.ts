import { Type, type Static } from 'typebox';

/**
 * The body of every non-2xx answer from the manager and the agent.
 * `error` is a stable machine-readable code (see {@link ERROR_STATUS}); `fault_message` says what
 * went wrong in words (a VMM's own message is carried here); `suggestion` says what to do next.
 */
export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'Stable error code, e.g. `validation_failed`' }),
    fault_message: Type.Optional(Type.String({ description: 'What went wrong, in words' })),
    status: Type.Integer({ description: 'The HTTP status, repeated for clients that lose it' }),
    suggestion: Type.Optional(Type.String({ description: 'What to do about it' })),
    retry_after: Type.Optional(
      Type.Integer({ description: 'Seconds until a retry may succeed (rate limits, the database away); also the Retry-After header' }),
    ),
    request_id: Type.String({ description: 'Correlates this answer with the server logs' }),
  },
  { additionalProperties: false },
);
export type ErrorBody = Static<typeof ErrorBody>;

/**
 * Every error code either process answers with, and its HTTP status. Codes are the contract:
 * clients branch on them, never on messages, and never on `instanceof` (which does not survive a wire).
 */
export const ERROR_STATUS = {
  validation_failed: 400,
  malformed_json: 400,
  bad_request: 400,
  unauthorized: 401,
  join_token_invalid: 401,
  forbidden: 403,
  quota_exceeded: 403,
  not_found: 404,
  route_not_found: 404,
  method_not_allowed: 405,
  timeout: 408,
  conflict: 409,
  precondition_failed: 412,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  /** Well-formed, but not something this resource can take: an address outside its network, the gateway's. */
  unprocessable: 422,
  rate_limited: 429,
  headers_too_large: 431,
  internal: 500,
  vmm_failed: 502,
  /** The manager cannot open the credential it keeps for a host (another key, a damaged value): calls to that host's agent fail. */
  host_credential_unreadable: 502,
  upstream_timeout: 504,
  /** The host's disk filled up while writing something (a snapshot): what was written is removed. */
  insufficient_storage: 507,
  not_ready: 503,
  unavailable: 503,
  database_unavailable: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** The HTTP status for a code; unknown codes are server faults. */
export function statusOfErrorCode(code: string): number {
  return (ERROR_STATUS as Record<string, number>)[code] ?? 500;
}
