import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { STORABLE_TEXT_PATTERN } from '../../../src/contracts/schema.js';
import { clientErrorReplyOf, errorReplyOf } from '../../../src/http/error-reply.js';
import { NexusError } from '../../../src/kit/nexus-error.js';

describe('errorReplyOf', () => {
  it('maps a NexusError code to its status and keeps message and suggestion', () => {
    const reply = errorReplyOf(new NexusError('join_token_invalid', 'nope', { suggestion: 'mint one' }), 'r1');
    assert.deepEqual(reply, {
      status: 401,
      body: { error: 'join_token_invalid', status: 401, request_id: 'r1', fault_message: 'nope', suggestion: 'mint one' },
      unexpected: false,
    });
  });
  it('hides the message and stack of an unexpected error', () => {
    const reply = errorReplyOf(new TypeError('cannot read properties of undefined (secret internals)'), 'r2');
    assert.equal(reply.status, 500);
    assert.equal(reply.body.error, 'internal');
    assert.doesNotMatch(JSON.stringify(reply.body), /secret internals/);
    assert.equal(reply.unexpected, true);
  });
  it('names unknown fields and the path of wrong ones', () => {
    const error = Object.assign(new Error('x'), {
      validationContext: 'body',
      validation: [
        { instancePath: '', keyword: 'additionalProperties', params: { additionalProperty: 'foo' }, message: 'must NOT have additional properties' },
        { instancePath: '/capacity/vcpus', keyword: 'type', params: {}, message: 'must be integer' },
      ],
    });
    const reply = errorReplyOf(error, 'r3');
    assert.equal(reply.status, 400);
    assert.equal(reply.body.fault_message, "body has unknown field 'foo'; body.capacity.vcpus must be integer");
  });
  it('says in words that text held a NUL or an unpaired surrogate, and which map key failed', () => {
    const error = Object.assign(new Error('x'), {
      validationContext: 'body',
      validation: [
        {
          instancePath: '/boot_args',
          keyword: 'pattern',
          params: { pattern: STORABLE_TEXT_PATTERN },
          message: `must match pattern "${STORABLE_TEXT_PATTERN}"`,
        },
        { instancePath: '/tags', keyword: 'pattern', propertyName: 'a b', params: { pattern: '^[a-z]+$' }, message: 'must match pattern "^[a-z]+$"' },
        {
          instancePath: '/tags',
          keyword: 'maxLength',
          propertyName: 'k'.repeat(1000),
          params: { limit: 63 },
          message: 'must NOT have more than 63 characters',
        },
      ],
    });
    assert.equal(
      errorReplyOf(error, 'r5').body.fault_message,
      `body.boot_args must not contain NUL or unpaired surrogate characters; body.tags key "a b" must match pattern "^[a-z]+$"; body.tags key "${'k'.repeat(64)}…" must NOT have more than 63 characters`,
    );
  });
  it('describes the first 20 issues of a request with thousands', () => {
    const validation = Array.from({ length: 5000 }, (_, i) => ({
      instancePath: `/ids/${i}`,
      keyword: 'format',
      params: {},
      message: 'must match format "uuid"',
    }));
    const message = errorReplyOf(Object.assign(new Error('x'), { validationContext: 'body', validation }), 'r6').body.fault_message ?? '';
    assert.equal(message.split('; ').length, 21);
    assert.match(message, /^body\.ids\.0 must match format "uuid"; .*; body\.ids\.19 must match format "uuid"; and 4980 more$/);
  });
  it('an unknown code is a server fault', () => {
    assert.equal(errorReplyOf(new NexusError('no_such_code', 'x'), 'r4').status, 500);
  });
});

describe('clientErrorReplyOf (requests the HTTP parser refused)', () => {
  it('answers 431 for a head past the limit, 408 for a late one, and 400 naming what the parser found otherwise', () => {
    assert.deepEqual(clientErrorReplyOf({ code: 'HPE_HEADER_OVERFLOW', reason: 'Header overflow' }, 'r1', 16_384).body, {
      error: 'headers_too_large',
      status: 431,
      request_id: 'r1',
      fault_message: 'the request line and headers are larger than 16384 bytes',
      suggestion: 'Send a shorter URL or fewer headers.',
    });
    assert.equal(clientErrorReplyOf({ code: 'ERR_HTTP_REQUEST_TIMEOUT' }, 'r2', 16_384).body.error, 'timeout');
    assert.equal(clientErrorReplyOf({ code: 'ERR_HTTP_REQUEST_TIMEOUT' }, 'r2', 16_384).status, 408);
    const smuggled = clientErrorReplyOf(
      { code: 'HPE_UNEXPECTED_CONTENT_LENGTH', reason: "Content-Length can't be present with Transfer-Encoding" },
      'r3',
      16_384,
    );
    assert.equal(smuggled.status, 400);
    assert.equal(smuggled.body.error, 'bad_request');
    assert.equal(smuggled.body.fault_message, "the request is not valid HTTP/1.1: Content-Length can't be present with Transfer-Encoding");
    assert.equal(clientErrorReplyOf({ code: 'HPE_WEIRD' }, 'r4', 16_384).body.fault_message, 'the request is not valid HTTP/1.1: HPE_WEIRD');
  });
  it("maps the router's own refusals (a path that is not UTF-8, a parameter past its length) to codes with their status", () => {
    const badUrl = errorReplyOf(Object.assign(new Error("'/v1/vms/%zz' is not a valid url component"), { code: 'FST_ERR_BAD_URL', statusCode: 400 }), 'r5');
    assert.equal(badUrl.status, 400);
    assert.equal(badUrl.body.error, 'bad_request');
    const long = errorReplyOf(Object.assign(new Error('too long'), { code: 'FST_ERR_MAX_PARAM_LENGTH', statusCode: 414 }), 'r6');
    assert.equal(long.status, 414);
    assert.equal(long.body.error, 'uri_too_long');
  });
});
