import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { type TSchema, Type } from 'typebox';
import { buildAgentOpenApiDocument } from '../../../src/agent/http/openapi-document.js';
import { Int32, Int64, INT32_MAX, STORABLE_TEXT_PATTERN, Text, TextMap, UNSTORABLE_CHARACTERS } from '../../../src/contracts/schema.js';
import { createLogger } from '../../../src/kit/logger.js';
import { buildOpenApiDocument } from '../../../src/manager/http/openapi-document.js';
import { type FieldSchema, requestShapes, unboundedFieldsOf } from '../../support/request-fields.js';

const rules = { storableTextPattern: STORABLE_TEXT_PATTERN, unstorableCharacters: UNSTORABLE_CHARACTERS };
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
// As the servers validate bodies: patterns are unicode regular expressions (Ajv's default).
const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
const accepts = (schema: TSchema, value: unknown) => ajv.validate(schema, value);

/** Every request part of a published document whose fields are not bounded the way the database needs. */
function unboundedIn(document: unknown): string[] {
  return requestShapes(document).flatMap((shape) => [
    ...shape.parameters.flatMap((parameter) => unboundedFieldsOf(parameter.schema, `${shape.method} ${shape.path} ${parameter.in} ${parameter.name}`, rules)),
    ...(shape.body ? unboundedFieldsOf(shape.body, `${shape.method} ${shape.path} body`, rules) : []),
  ]);
}

describe('request schemas', () => {
  const logger = createLogger({ name: 'test', level: 'silent' });

  it("bound every field of the manager's requests (dev-mode routes included): strings, integers, arrays, maps", async () => {
    assert.deepEqual(unboundedIn(await buildOpenApiDocument(logger, { devRoutes: true })), []);
  });

  it("bound every field of the agent's requests", async () => {
    assert.deepEqual(unboundedIn(await buildAgentOpenApiDocument(logger)), []);
  });

  it('the walk finds what is unbounded (it cannot pass by looking at nothing)', () => {
    const problems = (schema: FieldSchema) => unboundedFieldsOf(schema, 'f', rules);
    assert.match(problems({ type: 'string' }).join(), /without maxLength/);
    assert.match(problems({ type: 'string', maxLength: 5 }).join(), /without a pattern/);
    assert.match(problems({ type: 'string', maxLength: 20, pattern: '^[^\\s/]+:[0-9]{1,5}$', example: 'a:80' }).join(), /may let a NUL/);
    assert.match(problems({ type: 'string', maxLength: 20, pattern: '^.+$', example: 'a' }).join(), /may let a NUL.*accepts/);
    assert.match(problems({ type: 'string', maxLength: 5, pattern: '^[a-z]+$' }).join(), /without an example/);
    assert.match(problems({ type: 'string', maxLength: 5, pattern: '^[a-z]+$', example: 'A' }).join(), /example "A" is not valid/);
    assert.match(problems({ type: 'integer', minimum: 0 }).join(), /without a minimum and a maximum/);
    assert.match(problems({ type: 'integer', minimum: 0, maximum: 1e20 }).join(), /without a minimum and a maximum/);
    assert.match(problems({ type: 'array', items: { type: 'boolean' } }).join(), /without maxItems/);
    assert.match(problems({ type: 'object', properties: {} }).join(), /accepts unknown fields/);
    assert.match(
      problems({ type: 'object', additionalProperties: { type: 'string', maxLength: 3, pattern: STORABLE_TEXT_PATTERN } }).join(),
      /without maxProperties.*without propertyNames/,
    );
    assert.match(problems({}).join(), /accepts anything/);
    assert.deepEqual(problems({ type: 'string', maxLength: 9, pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$', example: 'web-1' }), []);
    assert.deepEqual(problems({ type: 'string', format: 'uuid' }), []);
  });
});

describe('request schema builders', () => {
  it('Text refuses NUL and unpaired surrogates, past maxLength too, and keeps every other character', () => {
    const text = Text(10);
    for (const good of ['', 'plain', 'héllo wörld'.slice(0, 10), '😀 emoji', 'tab\there', "x'); --"])
      assert.equal(accepts(text, good), true, JSON.stringify(good));
    for (const bad of ['a\u0000b', '\u0000', 'a\ud800b', 'a\udc00', '\ud83d', 'x'.repeat(11)]) assert.equal(accepts(text, bad), false, JSON.stringify(bad));
  });

  it('Text with a pattern of its own carries its example into the schema', () => {
    const name = Text(63, { minLength: 1, pattern: '^[a-z]+$', example: 'web' });
    assert.deepEqual((name as { examples?: unknown }).examples, ['web']);
    assert.equal(accepts(name, 'web'), true);
    assert.equal(accepts(name, 'we\u0000b'), false);
  });

  it('Int32 and Int64 default to their columns, and refuse bounds outside them', () => {
    assert.equal(accepts(Int32(), INT32_MAX), true);
    assert.equal(accepts(Int32(), INT32_MAX + 1), false);
    assert.equal(accepts(Int32(), 1e20), false);
    assert.equal(accepts(Int32(), -1), false, 'non-negative unless asked');
    assert.equal(accepts(Int64(), Number.MAX_SAFE_INTEGER), true);
    assert.equal(accepts(Int64(), 2 ** 53), false);
    assert.equal(accepts(Int64(), 1e20), false);
    assert.equal(accepts(Int32({ minimum: 1, maximum: 5 }), 6), false);
    assert.throws(() => Int32({ maximum: INT32_MAX + 1 }), /outside/);
    assert.throws(() => Int64({ maximum: 2 ** 63 }), /outside/);
  });

  it("TextMap checks every key (TypeBox's Record lets a key that misses its pattern through)", () => {
    const key = Text(8, { minLength: 1, pattern: '^[a-z]+$', example: 'env' });
    const map = TextMap(key, Text(5), { maxEntries: 2, description: 'labels' });
    const record = Type.Record(Type.String({ pattern: '^[a-z]+$' }), Type.String());
    assert.equal(accepts(record, { 'a b': 'v' }), true, 'the behaviour TextMap exists for');
    assert.equal(accepts(map, { env: 'prod', tier: 'web' }), true);
    for (const bad of [
      { 'a b': 'v' },
      { ['k'.repeat(9)]: 'v' },
      { '': 'v' },
      { é: 'v' },
      { 'a\u0000': 'v' },
      { a: 'v', b: 'v', c: 'v' },
      { env: 'x'.repeat(6) },
      { env: 'a\u0000' },
      { env: 1 },
    ]) {
      assert.equal(accepts(map, bad), false, JSON.stringify(bad));
    }
  });
});
