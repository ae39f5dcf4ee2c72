import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errorReplyOf } from '../../../src/kit/http/error-reply.js';
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
  it('an unknown code is a server fault', () => {
    assert.equal(errorReplyOf(new NexusError('no_such_code', 'x'), 'r4').status, 500);
  });
});
