import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { relay } from '../../../src/agent/proxy/socket-proxy.js';
import { tempDir } from '../../support/temp-dir.js';

describe('relay', () => {
  const dir = tempDir('nexus-relay-');
  after(() => dir.remove());

  it('passes method, path, body, content-type and accept; no other header, least of all the agent credential', async () => {
    const socket = join(dir.path, 'api.sock');
    let seen: { method?: string; url?: string; headers?: IncomingHttpHeaders; body?: string } = {};
    const server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        seen = { method: request.method, url: request.url, headers: request.headers, body };
        response.writeHead(400, { 'content-type': 'application/json', deprecation: 'true', 'x-internal': 'no' }).end('{"fault_message":"nope"}');
      });
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      const answer = await relay({
        socket,
        method: 'PUT',
        path: '/machine-config',
        headers: {
          authorization: 'Bearer agent-secret',
          connection: 'keep-alive',
          'proxy-authorization': 'x',
          'x-trace': 'abc',
          'content-type': 'application/json',
          accept: 'application/json',
          host: 'evil',
          // Framing the caller claims must not reach the VMM: a smuggled second request would.
          'content-length': '2',
          'transfer-encoding': 'chunked',
          expect: '100-continue',
        },
        body: '{"vcpu_count":1,"mem_size_mib":128}',
        timeoutMs: 2000,
      });
      assert.equal(seen.method, 'PUT');
      assert.equal(seen.url, '/machine-config');
      assert.equal(seen.body, '{"vcpu_count":1,"mem_size_mib":128}');
      assert.equal(seen.headers?.authorization, undefined, 'the agent credential stays with the agent');
      assert.equal(seen.headers?.['proxy-authorization'], undefined);
      assert.notEqual(seen.headers?.host, 'evil');
      assert.equal(seen.headers?.['x-trace'], undefined);
      assert.equal(seen.headers?.['content-type'], 'application/json');
      assert.equal(seen.headers?.accept, 'application/json');
      assert.equal(seen.headers?.['content-length'], String('{"vcpu_count":1,"mem_size_mib":128}'.length), 'the relay frames the body');
      assert.equal(seen.headers?.['transfer-encoding'], undefined);
      assert.equal(seen.headers?.expect, undefined);
      assert.equal(answer.status, 400, "the VMM's status as it is");
      assert.equal(answer.body.toString(), '{"fault_message":"nope"}');
      assert.deepEqual(answer.headers, { 'content-type': 'application/json', deprecation: 'true' });
    } finally {
      server.close();
    }
  });

  it('a header value with CR, LF or NUL is refused before anything reaches the VMM (no header injection)', async () => {
    const socket = join(dir.path, 'inject.sock');
    let requests = 0;
    const server = createServer((_request, response) => {
      requests++;
      response.end();
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      for (const value of ['application/json\r\nX-Injected: 1', 'application/json\nX-Injected: 1', 'application/json\u0000']) {
        await assert.rejects(relay({ socket, method: 'PUT', path: '/machine-config', headers: { 'content-type': value }, body: '{}', timeoutMs: 2000 }), {
          code: 'bad_request',
          message: /content-type header holds control characters/,
        });
      }
      assert.equal(requests, 0);
    } finally {
      server.close();
    }
  });

  it('a VMM that does not answer in time is upstream_timeout; no VMM is vmm_failed', async () => {
    const socket = join(dir.path, 'stall.sock');
    const server = createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      await assert.rejects(relay({ socket, method: 'GET', path: '/', headers: {}, timeoutMs: 300 }), { code: 'upstream_timeout' });
    } finally {
      server.closeAllConnections();
      server.close();
    }
    await assert.rejects(relay({ socket: join(dir.path, 'none.sock'), method: 'GET', path: '/', headers: {}, timeoutMs: 300 }), { code: 'vmm_failed' });
  });
});
