// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

interface RawAnswer {
  status: number;
  headers: Headers;
  body: any;
}

/**
 * Writes `request` as-is on a fresh TCP connection and reads the one answer. Resolves only once
 * the server has closed the connection (else rejects after 10 s), so closing is checked too.
 */
function rawRequest(port: number, request: string | Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 10 s; got ${Buffer.concat(chunks).toString('latin1').slice(0, 300)}`));
    }, 10_000);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined); // a reset after the answer: what was read is judged below
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseAnswer(Buffer.concat(chunks).toString('utf8')));
      } catch (error) {
        reject(error);
      }
    });
    socket.write(request);
  });
}

/** An HTTP answer's text (head and body) as status, headers and parsed body. */
function parseAnswer(text: string): RawAnswer {
  const split = text.indexOf('\r\n\r\n');
  if (split === -1) throw new Error(`not an HTTP answer: ${JSON.stringify(text.slice(0, 300))}`);
  const [statusLine = '', ...lines] = text.slice(0, split).split('\r\n');
  const headers = new Headers();
  for (const line of lines) headers.append(line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim());
  const raw = text.slice(split + 4);
  let body: unknown = raw;
  try {
    body = JSON.parse(raw);
  } catch {
    // not JSON: the assertions say so
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]), headers, body };
}

/**
 * On one connection: writes `first`, reads its whole answer (by its Content-Length), then writes
 * `second` and reads until the server closes. Answers the first answer's text and what came after.
 */
function keepAliveExchange(port: number, first: string, second: string): Promise<{ first: string; rest: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let firstLength: number | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within 10 s; got ${received.toString('latin1').slice(0, 600)}`));
    }, 10_000);
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (firstLength !== undefined) return;
      const text = received.toString('latin1');
      const head = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)/i.exec(text.slice(0, head));
      if (head === -1 || !length || received.length < head + 4 + Number(length[1])) return;
      firstLength = head + 4 + Number(length[1]);
      socket.write(second);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      if (firstLength === undefined) return reject(new Error(`the first answer never completed: ${received.toString('latin1').slice(0, 300)}`));
      resolve({ first: received.subarray(0, firstLength).toString('utf8'), rest: received.subarray(firstLength).toString('utf8') });
    });
    socket.write(first);
  });
}

/**
 * Requests Node's HTTP parser or Fastify's router refuses before any route runs are answered in
 * the error contract (status, request_id, what was wrong), not Fastify's default body.
 */
describe('requests refused by the HTTP parser and the router', () => {
  let manager: TestManager;
  let port: number;

  before(async () => {
    manager = await startTestManager();
    port = Number(new URL(manager.url).port);
  });
  after(async () => manager?.dispose());

  const cases: [string, string | Buffer, number, string][] = [
    ['a bare CR in a header value', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: one\rtwo\r\n\r\n', 400, 'bad_request'],
    ['a NUL in a header value', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: one\0two\r\n\r\n', 400, 'bad_request'],
    [
      'Transfer-Encoding with Content-Length',
      'POST /v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
      'bad_request',
    ],
    [
      'two Content-Lengths',
      'POST /v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      400,
      'bad_request',
    ],
    ['a folded header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: one\r\n  two\r\n\r\n', 400, 'bad_request'],
    ['a 20 KB URL', `GET /v1/vms?name_prefix=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'headers_too_large'],
    ['a path that is not percent-encoded UTF-8', 'GET /v1/vms/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'bad_request'],
    ['a path parameter past its length', `GET /v1/vms/${'a'.repeat(200)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 414, 'uri_too_long'],
  ];
  for (const [what, request, status, code] of cases) {
    it(`${what}: ${status} ${code} in the error contract`, async () => {
      const answer = await rawRequest(port, request);
      assertErrorContract(answer, status, code);
      assert.match(answer.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(typeof answer.body.fault_message, 'string', 'says what was wrong');
    });
  }

  it('a malformed request after a good one on the same keep-alive connection is answered too, after the first answer', async () => {
    const texts = await keepAliveExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: one\0two\r\n\r\n');
    assert.match(texts.first, /^HTTP\/1\.1 200 /, 'the good request is answered first');
    const answer = parseAnswer(texts.rest);
    assertErrorContract(answer, 400, 'bad_request');
    assert.equal(answer.headers.get('connection'), 'close');
  });

  it('the server keeps serving afterwards', async () => {
    assert.equal((await send(`${manager.url}/healthz`, { anonymous: true })).status, 200);
  });
});

/** JSON is UTF-8: a body declared in another charset would be read as UTF-8 and mean something else. */
describe('bodies in a charset other than UTF-8', () => {
  let manager: TestManager;
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    manager = await startTestManager();
  });
  after(async () => manager?.dispose());

  it('are refused with 415 before they are parsed', async () => {
    for (const charset of ['latin1', 'utf-16', 'ISO-8859-1', '"utf-16le"']) {
      const answer = await send(url('/v1/projects'), {
        raw: JSON.stringify({ name: 'charset-x' }),
        headers: { 'content-type': `application/json; charset=${charset}` },
      });
      assertErrorContract(answer, 415, 'unsupported_media_type');
      assert.match(answer.body.fault_message, /charset/);
    }
    assert.equal(
      (await send(url('/v1/projects'))).body.items.some((project: { name: string }) => project.name === 'charset-x'),
      false,
      'nothing was created',
    );
  });

  it('UTF-8 in any case, or no charset, is accepted', async () => {
    const types = ['application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8', 'application/json;charset="Utf-8"'];
    for (const [index, type] of types.entries()) {
      const answer = await send(url('/v1/projects'), { raw: JSON.stringify({ name: `charset-ok-${index}` }), headers: { 'content-type': type } });
      assert.equal(answer.status, 201, `${type}: ${JSON.stringify(answer.body)}`);
    }
  });
});
