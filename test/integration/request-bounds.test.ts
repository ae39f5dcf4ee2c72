import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { type RunningAgent, startAgent } from '../../src/agent/main.js';
import { captureLogger } from '../support/capture-logger.js';
import { assertErrorContract } from '../support/error-contract.js';
import { type RequestShape, badValuesOf, isSchemaRefusal, requestFor, requestShapes } from '../support/request-fields.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

type Answer = Awaited<ReturnType<typeof send>>;
type Call = (request: { method: string; path: string; body?: unknown }) => Promise<Answer>;

/** Where Ajv's refusal of a request part points, as the error contract words it. */
const CONTEXT = { path: 'params', query: 'querystring' } as const;

/** An answer's body in a failure message: a whole document would make the assertion's diff crawl. */
function briefly(body: unknown): string {
  const text = JSON.stringify(body) ?? String(body);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/** What is wrong with `answer` as a refusal of `bad` at `where` (null: it is the right one). */
function refusalProblem(answer: Answer, where: string): string | null {
  if (answer.status !== 400 || answer.body?.error !== 'validation_failed') return `answered ${answer.status} ${briefly(answer.body)}`;
  try {
    assertErrorContract(answer, 400, 'validation_failed');
  } catch (error) {
    return `broke the error contract: ${(error as Error).message}`;
  }
  // Each issue reads "<where> <what is wrong>", issues joined by "; ".
  const named = String(answer.body.fault_message)
    .split('; ')
    .some((issue) => issue === where || issue.startsWith(`${where} `));
  return named ? null : `was refused for something else: ${answer.body.fault_message}`;
}

/**
 * Every string of every request part (path, query, body, nested fields, map keys) is tried with
 * a NUL (and, in bodies, an unpaired surrogate), every date-time with dates that do not exist or
 * that the database cannot hold (BAD_DATES), every number past its bounds; each must be a
 * 400 in the error contract naming that field, never a 500 from the database or the host. The
 * unchanged request is sent first, so a refusal cannot come from the rest of the request.
 */
function walkRequestFields(shapes: () => RequestShape[], call: () => Call, skipBaseline: (shape: RequestShape) => boolean = () => false): void {
  it('every field of every operation refuses what the database cannot hold, with a 400', async (t) => {
    assert.ok(shapes().length > 10, `only ${shapes().length} operations published`);
    // One subtest per operation: the document is read once the server runs.
    for (const shape of shapes()) {
      await t.test(`${shape.method} ${shape.path}`, async () => {
        const problems: string[] = [];
        if (!skipBaseline(shape)) {
          const baseline = await call()(requestFor(shape));
          if (baseline.status === 500 || isSchemaRefusal(baseline)) problems.push(`the valid request answered ${baseline.status} ${briefly(baseline.body)}`);
        }
        for (const parameter of shape.parameters) {
          if (parameter.in === 'header') continue; // the HTTP parser refuses a NUL in a header before any route
          for (const bad of badValuesOf(parameter.schema, `${CONTEXT[parameter.in]}.${parameter.name}`, { surrogates: false })) {
            const answer = await call()(requestFor(shape, { in: parameter.in, name: parameter.name, value: bad.value }));
            const problem = refusalProblem(answer, bad.where);
            if (problem) problems.push(`${bad.where} with ${bad.what} ${problem}`);
          }
        }
        if (shape.body) {
          for (const bad of badValuesOf(shape.body, 'body', { surrogates: true })) {
            const answer = await call()(requestFor(shape, { in: 'body', value: bad.value }));
            const problem = refusalProblem(answer, bad.where);
            if (problem) problems.push(`${bad.where} with ${bad.what} ${problem}`);
          }
        }
        assert.deepEqual(problems, []);
      });
    }
  });
}

/** Unknown query parameters are refused on every route, like unknown body fields. */
function walkUnknownQuery(shapes: () => RequestShape[], call: () => Call, kitPaths: string[]): void {
  it('every operation refuses an unknown query parameter (400, naming it)', async () => {
    const problems: string[] = [];
    const requests = [
      ...shapes().map((shape) => requestFor(shape, undefined, { nexus_unknown: '1' })),
      ...kitPaths.map((path) => ({ method: 'GET', path: `${path}?nexus_unknown=1` })),
    ];
    for (const request of requests) {
      const answer = await call()(request);
      const problem = refusalProblem(answer, "querystring has unknown field 'nexus_unknown'");
      if (problem) problems.push(`${request.method} ${request.path} ${problem}`);
    }
    assert.deepEqual(problems, []);
  });
}

describe('manager: request bounds', () => {
  let manager: TestManager;
  let shapes: RequestShape[] = [];
  const url = (path: string) => `${manager.url}${path}`;
  const call: Call = (request) => send(url(request.path), { method: request.method, body: request.body });

  before(async () => {
    // Hundreds of refused calls: the rate limits must not be what answers.
    manager = await startTestManager({ readsPerMinute: 1_000_000, writesPerMinute: 1_000_000 });
    shapes = requestShapes((await send(url('/openapi.json'))).body);
  });
  after(async () => manager?.dispose());

  walkRequestFields(
    () => shapes,
    () => call,
  );
  walkUnknownQuery(
    () => shapes,
    () => call,
    ['/metrics', '/openapi.json'],
  );

  describe('tags', () => {
    const vm = (name: string, tags: unknown) =>
      send(url('/v1/vms'), { body: { name, vcpu: 1, mem_mib: 128, kernel_path: '/k', rootfs_path: '/r', desired_state: 'stopped', tags } });
    const many = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${i}`, 'v']));

    for (const [label, tags] of [
      ['a key with a space', { 'a b': 'v' }],
      ['a 1000-character key', { ['k'.repeat(1000)]: 'v' }],
      ['a 64-character key', { ['k'.repeat(64)]: 'v' }],
      ['an empty key', { '': 'v' }],
      ['a unicode key', { clé: 'v' }],
      ['an emoji key', { '😀': 'v' }],
      ['a SQL-looking key', { "x'); DROP TABLE vm; --": 'v' }],
      ['a key with a NUL', { 'a\u0000b': 'v' }],
      ['a 256-character value', { env: 'v'.repeat(256) }],
      ['a value with a NUL', { env: 'a\u0000b' }],
      ['a value that is not a string', { env: 1 }],
      ['51 tags', many(51)],
      ['5000 tags', many(5000)],
    ] as const) {
      it(`refuses ${label} (400)`, async () => {
        const answer = await vm('tagged', tags);
        assertErrorContract(answer, 400, 'validation_failed');
        assert.match(answer.body.fault_message, /body\.tags/);
      });
    }

    it('keeps 50 tags with 63-character keys of letters, digits, _ . - and 255-character values', async () => {
      const tags = { ...many(49), [`${'a'.repeat(60)}_.-`]: 'v'.repeat(255) };
      const answer = await vm('tagged-ok', tags);
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      assert.deepEqual(answer.body.tags, tags);
    });

    it('publishes the rule in the OpenAPI document', async () => {
      const document = (await send(url('/openapi.json'))).body;
      const schema = document.paths['/v1/vms'].post.requestBody.content['application/json'].schema.properties.tags;
      assert.equal(schema.maxProperties, 50);
      assert.equal(schema.propertyNames.pattern, '^[a-zA-Z0-9_.-]+$');
      assert.equal(schema.propertyNames.maxLength, 63);
      assert.equal(schema.additionalProperties.maxLength, 255);
      assert.match(schema.description, /at most 50/);
    });
  });

  it('If-Match past what a resource version can be is a 400, not a database error', async () => {
    const created = await send(url('/v1/vms'), {
      body: { name: 'etag-bounds', vcpu: 1, mem_mib: 128, kernel_path: '/k', rootfs_path: '/r', desired_state: 'stopped' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    for (const etag of ['"99999999999999999999"', '9223372036854775808', `"${'9'.repeat(16)}"`]) {
      for (const [method, path] of [
        ['POST', `/v1/vms/${created.body.id}/start`],
        ['DELETE', `/v1/vms/${created.body.id}`],
      ] as const) {
        const answer = await send(url(path), { method, headers: { 'if-match': etag } });
        assertErrorContract(answer, 400, 'validation_failed');
        assert.match(answer.body.fault_message, /headers\.if-match/);
      }
    }
    assert.equal(
      (await send(url(`/v1/vms/${created.body.id}/start`), { method: 'POST', headers: { 'if-match': '"1"' } })).status,
      200,
      'a real ETag still works',
    );
  });
});

describe('agent: request bounds', () => {
  const dir = tempDir('nexus-agent-bounds-');
  let agent: RunningAgent;
  let shapes: RequestShape[] = [];
  let auth: Record<string, string> = {};
  const call: Call = (request) => send(`${agent.url}${request.path}`, { method: request.method, body: request.body, headers: auth });

  before(async () => {
    agent = await startAgent(resolveAgentConfig({ bind: '127.0.0.1:0', runDir: join(dir.path, 'run') }, {}), captureLogger('agent').log);
    auth = { authorization: `Bearer ${agent.identity.credential}` };
    shapes = requestShapes((await send(`${agent.url}/openapi.json`, { headers: auth })).body);
  });
  after(async () => {
    await agent?.close();
    dir.remove();
  });

  // A valid credential replacement would lock this test out of its agent; its refusals are still tried.
  walkRequestFields(
    () => shapes,
    () => call,
    (shape) => shape.path.endsWith('/credential'),
  );
  walkUnknownQuery(
    () => shapes.filter((shape) => !shape.path.endsWith('/credential')),
    () => call,
    ['/metrics', '/openapi.json'],
  );
});
