import type { FastifyError } from 'fastify';
import { type ErrorBody, statusOfErrorCode } from '../../contracts/errors.js';
import { NexusError } from '../nexus-error.js';

interface AjvIssue {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** Fastify's own errors with a code we answer specifically; every other 4xx is `bad_request`. */
const FASTIFY_CODES: Record<string, { error: string; suggestion?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { error: 'payload_too_large', suggestion: 'Send a smaller body.' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { error: 'unsupported_media_type', suggestion: 'Send the body as application/json.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { error: 'malformed_json', suggestion: 'Send a valid JSON document.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { error: 'malformed_json', suggestion: 'Send a JSON document, or no Content-Type with no body.' },
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
    const message =
      known.error === 'unsupported_media_type' ? `Content-Type '${contentType ?? '(none)'}' is not accepted` : fastifyError.message;
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

/** "body.capacity.vcpus must be integer; body has unknown field 'foo'" */
function describeValidation(context: string, issues: AjvIssue[]): string {
  return issues
    .map((issue) => {
      const where = context + (issue.instancePath ?? '').replaceAll('/', '.');
      if (issue.keyword === 'additionalProperties') return `${where} has unknown field '${String(issue.params?.additionalProperty)}'`;
      return `${where} ${issue.message ?? 'is invalid'}`;
    })
    .join('; ');
}
