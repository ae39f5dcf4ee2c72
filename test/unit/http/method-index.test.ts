import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MethodIndex } from '../../../src/http/method-index.js';

describe('MethodIndex', () => {
  it('answers the methods a path would match, including parametric routes', () => {
    const index = new MethodIndex();
    index.add(['GET', 'HEAD'], '/v1/hosts');
    index.add('POST', '/v1/hosts/join-tokens');
    index.add('GET', '/v1/hosts/:id');
    index.add('POST', '/v1/hosts/:id/heartbeat');
    assert.deepEqual(index.allowedFor('/v1/hosts'), ['GET', 'HEAD']);
    assert.deepEqual(index.allowedFor('/v1/hosts/abc'), ['GET']);
    assert.deepEqual(index.allowedFor('/v1/hosts/join-tokens'), ['GET', 'POST']);
    assert.deepEqual(index.allowedFor('/v1/hosts/abc/heartbeat'), ['POST']);
    assert.deepEqual(index.allowedFor('/v2/anything'), []);
  });
});
