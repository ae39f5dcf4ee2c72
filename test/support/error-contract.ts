import assert from 'node:assert/strict';

const ALLOWED = new Set(['error', 'fault_message', 'status', 'suggestion', 'request_id', 'retry_after']);

/** Asserts an answer is the error contract with this status and code, and leaks no internals. */
export function assertErrorContract(response: { status: number; headers: Headers; body: any }, status: number, code: string): void {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(typeof response.body, 'object', `body is not JSON: ${String(response.body)}`);
  for (const key of Object.keys(response.body)) assert.ok(ALLOWED.has(key), `unexpected field ${key}`);
  assert.equal(response.body.error, code);
  assert.equal(response.body.status, status);
  assert.equal(typeof response.body.request_id, 'string');
  assert.equal(response.body.request_id, response.headers.get('x-request-id'));
  const text = JSON.stringify(response.body);
  assert.doesNotMatch(text, /\bat .+\.(ts|js):\d+/, 'a stack trace leaked');
  assert.doesNotMatch(text, /node_modules/, 'an internal path leaked');
}
