import type { FastifyError } from 'fastify';
import { type ErrorBody, statusOfErrorCode } from '../contracts/errors.js';
import { STORABLE_TEXT_PATTERN } from '../contracts/schema.js';
import { NexusError } from '../kit/nexus-error.js';

interface AjvIssue {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
  /** Set when a map key failed its propertyNames rule. */
  propertyName?: string;
}

/** Fastify's own errors with a code we answer specifically; every other 4xx is `bad_request`. */
const FASTIFY_CODES: Record<string, { error: string; suggestion?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { error: 'payload_too_large', suggestion: 'Send a smaller body.' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { error: 'unsupported_media_type', suggestion: 'Send the body as application/json.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { error: 'malformed_json', suggestion: 'Send a valid JSON document.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { error: 'malformed_json', suggestion: 'Send a JSON document, or no Content-Type with no body.' },
  // Raised by the router before any route or hook runs (frameworkErrors).
  FST_ERR_BAD_URL: { error: 'bad_request', suggestion: 'Percent-encode the path as UTF-8.' },
  FST_ERR_MAX_PARAM_LENGTH: { error: 'uri_too_long', suggestion: 'Path parameters are ids and names: at most 100 characters.' },
};

export interface ErrorReply {
  status: number;
  body: ErrorBody;
  /** True for a fault nobody anticipated (a bug): log it with its stack. */
  unexpected: boolean;
}

/** Turns anything thrown while serving a request into the error contract. Never leaks a stack. */
export function errorReplyOf(error: unknown, requestId: string, contentType?: string): ErrorReply {
  if (error instanceof NexusError) {
    const status = statusOfErrorCode(error.code);
    const answer = reply(status, error.code, requestId, error.faultMessage, error.suggestion, false);
    if (error.retryAfterSeconds !== undefined) answer.body.retry_after = error.retryAfterSeconds;
    return answer;
  }
  const fastifyError = error as Partial<FastifyError> & { validation?: AjvIssue[]; validationContext?: string };
  if (Array.isArray(fastifyError.validation)) {
    return reply(
      400,
      'validation_failed',
      requestId,
      describeValidation(fastifyError.validationContext ?? 'request', fastifyError.validation),
      'Fix the named fields; GET /openapi.json describes every request.',
      false,
    );
  }
  const known = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (known) {
    const message = known.error === 'unsupported_media_type' ? `Content-Type '${contentType ?? '(none)'}' is not accepted` : fastifyError.message;
    return reply(statusOfErrorCode(known.error), known.error, requestId, message, known.suggestion, false);
  }
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) {
    return reply(400, 'malformed_json', requestId, `body is not valid JSON: ${error.message}`, 'Send a valid JSON document.', false);
  }
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return reply(status, status === 404 ? 'not_found' : 'bad_request', requestId, fastifyError.message, undefined, false);
  }
  return reply(500, 'internal', requestId, 'internal error', 'Retry; if it persists, report the request_id.', true);
}

/**
 * The answer to a request Node's HTTP parser refused, before any request existed: 431 for a
 * request line and headers past the parser's limit, 408 for one that took too long to arrive,
 * else 400 naming what the parser found (llhttp's reason: "Invalid header value char",
 * "Content-Length can't be present with Transfer-Encoding"…).
 */
export function clientErrorReplyOf(error: { code?: string; reason?: string }, requestId: string, maxHeaderBytes: number): ErrorReply {
  if (error.code === 'HPE_HEADER_OVERFLOW') {
    return reply(
      431,
      'headers_too_large',
      requestId,
      `the request line and headers are larger than ${maxHeaderBytes} bytes`,
      'Send a shorter URL or fewer headers.',
      false,
    );
  }
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return reply(408, 'timeout', requestId, 'the request did not arrive in time', 'Send the whole request promptly.', false);
  }
  const what = typeof error.reason === 'string' && error.reason.length > 0 ? error.reason : (error.code ?? 'malformed request');
  return reply(
    400,
    'bad_request',
    requestId,
    `the request is not valid HTTP/1.1: ${what}`,
    'Send one Content-Length or Transfer-Encoding, and header values without CR, LF, NUL or line folding.',
    false,
  );
}

function reply(
  status: number,
  code: string,
  requestId: string,
  faultMessage: string | undefined,
  suggestion: string | undefined,
  unexpected: boolean,
): ErrorReply {
  const body: ErrorBody = { error: code, status, request_id: requestId };
  if (faultMessage) body.fault_message = faultMessage;
  if (suggestion) body.suggestion = suggestion;
  return { status, body, unexpected };
}

const MAX_DESCRIBED_ISSUES = 20;

/** "body.capacity.vcpus must be integer; body has unknown field 'foo'" */
function describeValidation(context: string, issues: AjvIssue[]): string {
  // A body of thousands of bad entries is described by its first few, not echoed whole.
  const more = issues.length > MAX_DESCRIBED_ISSUES ? [`and ${issues.length - MAX_DESCRIBED_ISSUES} more`] : [];
  return issues
    .slice(0, MAX_DESCRIBED_ISSUES)
    .map((issue) => {
      const where = context + (issue.instancePath ?? '').replaceAll('/', '.');
      if (issue.keyword === 'additionalProperties') return `${where} has unknown field '${String(issue.params?.additionalProperty)}'`;
      const subject = issue.propertyName === undefined ? where : `${where} key ${JSON.stringify(clipped(issue.propertyName))}`;
      if (issue.keyword === 'pattern' && issue.params?.pattern === STORABLE_TEXT_PATTERN)
        return `${subject} must not contain NUL or unpaired surrogate characters`;
      return `${subject} ${issue.message ?? 'is invalid'}`;
    })
    .concat(more)
    .join('; ');
}

/** A caller's text quoted back in a message: enough to recognise it, never a megabyte. */
function clipped(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}
