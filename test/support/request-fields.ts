import { randomUUID } from 'node:crypto';

/** A JSON Schema as an OpenAPI document publishes it: only the keywords the walks read. */
export interface FieldSchema {
  type?: string | string[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  enum?: unknown[];
  const?: unknown;
  anyOf?: FieldSchema[];
  properties?: Record<string, FieldSchema>;
  required?: string[];
  additionalProperties?: boolean | FieldSchema;
  propertyNames?: FieldSchema;
  maxProperties?: number;
  items?: FieldSchema;
  minItems?: number;
  maxItems?: number;
  default?: unknown;
  example?: unknown;
  /** JSON Schema's form, which the OpenAPI document keeps where it does not rewrite it (propertyNames). */
  examples?: unknown[];
}

export interface RequestParameter {
  in: 'path' | 'query' | 'header';
  name: string;
  required: boolean;
  schema: FieldSchema;
}

/** One operation of an OpenAPI document, as far as a request is concerned. */
export interface RequestShape {
  method: string;
  /** OpenAPI form: `/v1/vms/{id}`. */
  path: string;
  parameters: RequestParameter[];
  body?: FieldSchema;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** Every operation of the document, with its parameters and JSON body schema. */
export function requestShapes(document: any): RequestShape[] {
  const shapes: RequestShape[] = [];
  for (const [path, operations] of Object.entries<any>(document.paths)) {
    for (const method of METHODS) {
      const operation = operations[method];
      if (!operation) continue;
      shapes.push({
        method: method.toUpperCase(),
        path,
        // A parameter's example sits beside its schema in OpenAPI 3.0: the walks want it in the schema.
        parameters: (operation.parameters ?? []).map((parameter: any) => ({
          in: parameter.in,
          name: parameter.name,
          required: parameter.required === true,
          schema: parameter.example === undefined ? parameter.schema : { ...parameter.schema, example: parameter.example },
        })),
        body: operation.requestBody?.content?.['application/json']?.schema,
      });
    }
  }
  return shapes;
}

/** The JSON type a schema describes (the first that is not null). */
export function typeOf(schema: FieldSchema): string | undefined {
  const types = Array.isArray(schema.type) ? schema.type : schema.type === undefined ? [] : [schema.type];
  return types.find((type) => type !== 'null') ?? types[0];
}

/** The member of a union a walk follows: the first that is not `null`. */
export function mainMemberOf(schema: FieldSchema): FieldSchema {
  if (!schema.anyOf) return schema;
  return mainMemberOf(schema.anyOf.find((member) => typeOf(member) !== 'null') ?? schema.anyOf[0] ?? {});
}

/** The value schema of a map (an object with no fixed properties whose entries share a schema). */
export function mapValueOf(schema: FieldSchema): FieldSchema | undefined {
  return typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined;
}

/** The schema's example, in either form. */
export function exampleOf(schema: FieldSchema): unknown {
  return schema.example ?? schema.examples?.[0];
}

/** A value the schema accepts: its example or default where it has one, else the least one. */
export function sampleOf(schema: FieldSchema): unknown {
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return schema.enum[0];
  if (schema.anyOf) return sampleOf(mainMemberOf(schema));
  if (exampleOf(schema) !== undefined) return exampleOf(schema);
  if (schema.default !== undefined) return schema.default;
  switch (typeOf(schema)) {
    case 'string':
      if (schema.format === 'uuid') return randomUUID();
      if (schema.format === 'date-time') return new Date(Date.now() + 24 * 3600_000).toISOString();
      return 'x'.repeat(Math.max(1, schema.minLength ?? 1));
    case 'integer':
    case 'number':
      return schema.minimum ?? 0;
    case 'boolean':
      return false;
    case 'array':
      return Array.from({ length: schema.minItems ?? 0 }, () => sampleOf(schema.items ?? {}));
    case 'object':
      return Object.fromEntries((schema.required ?? []).map((name) => [name, sampleOf(schema.properties?.[name] ?? {})]));
    default:
      return null;
  }
}

/** A value a schema must refuse, and where the refusal must point (`body.tags.env`). */
export interface BadValue {
  where: string;
  value: unknown;
  /** What is wrong with it, for the assertion message. */
  what: string;
}

export interface BadValueOptions {
  /** Also try an unpaired UTF-16 surrogate (only a JSON body can carry one). */
  surrogates: boolean;
}

/**
 * Date-times the format check alone (ajv-formats) or `Date` alone lets through and the database
 * cannot store or give back: each must be refused where a date-time is asked for.
 */
export const BAD_DATES: ReadonlyArray<readonly [string, string]> = [
  ['2026-12-31T23:59:60Z', 'a leap second'],
  ['2026-02-30T00:00:00Z', 'February 30'],
  ['0000-01-01T00:00:00Z', 'year 0000'],
  ['0001-01-01T00:30:00+01:00', 'year 0000 once its offset is applied'],
  ['10000-01-01T00:00:00Z', 'year 10000'],
];

/**
 * Values the database (or the host) would refuse, each put into an otherwise valid value of the
 * schema: a NUL (and an unpaired surrogate) inside every string, map keys included; dates that do
 * not exist or that the database cannot hold in every date-time; past the bounds of every integer
 * and number; at every depth of objects, maps and arrays.
 */
export function badValuesOf(schema: FieldSchema, where: string, options: BadValueOptions): BadValue[] {
  const main = mainMemberOf(schema);
  switch (typeOf(main)) {
    case 'string': {
      const sample = String(sampleOf(main));
      const at = Math.floor(sample.length / 2);
      const inside = (character: string) => `${sample.slice(0, at)}${character}${sample.slice(at)}`;
      const bad = [{ where, value: inside('\u0000'), what: 'a NUL' }];
      if (options.surrogates) bad.push({ where, value: inside('\ud800'), what: 'an unpaired surrogate' });
      if (main.format === 'date-time') bad.push(...BAD_DATES.map(([value, what]) => ({ where, value, what })));
      return bad;
    }
    case 'integer':
    case 'number': {
      const bad = [1e20, -1e20].map((value) => ({ where, value, what: String(value) }));
      if (main.maximum !== undefined && main.maximum < 1e20) bad.unshift({ where, value: main.maximum + 1, what: `maximum + 1 (${main.maximum + 1})` });
      return bad;
    }
    case 'array': {
      const items = main.items ?? {};
      return badValuesOf(items, `${where}.0`, options).map((bad) => ({ ...bad, value: [bad.value] }));
    }
    case 'object': {
      const base = sampleOf(main) as Record<string, unknown>;
      const bad: BadValue[] = [];
      for (const [name, property] of Object.entries(main.properties ?? {})) {
        for (const inner of badValuesOf(property, `${where}.${name}`, options)) bad.push({ ...inner, value: { ...base, [name]: inner.value } });
      }
      const valueSchema = mapValueOf(main);
      if (valueSchema) {
        const keySchema = main.propertyNames ?? { type: 'string' };
        const key = String(sampleOf(keySchema));
        for (const inner of badValuesOf(keySchema, where, options)) {
          bad.push({ where, value: { [String(inner.value)]: sampleOf(valueSchema) }, what: `a key with ${inner.what}` });
        }
        for (const inner of badValuesOf(valueSchema, `${where}.${key}`, options)) bad.push({ ...inner, value: { [key]: inner.value } });
      }
      return bad;
    }
    default:
      return [];
  }
}

/**
 * A request for a shape: path parameters filled in, required query parameters and the body
 * sampled, with `override` replacing one part (`{ in: 'query', name, value }` or `{ in: 'body', value }`).
 */
export function requestFor(
  shape: RequestShape,
  override?: { in: 'path' | 'query' | 'body'; name?: string; value: unknown },
  extraQuery: Record<string, string> = {},
): { method: string; path: string; body?: unknown } {
  let path = shape.path;
  const query = new URLSearchParams();
  for (const parameter of shape.parameters) {
    const overridden = override && override.in === parameter.in && override.name === parameter.name;
    const value = overridden ? override.value : sampleOf(parameter.schema);
    if (parameter.in === 'path') path = path.replace(`{${parameter.name}}`, encodeURIComponent(String(value)));
    else if (parameter.in === 'query' && (parameter.required || overridden)) query.set(parameter.name, String(value));
  }
  for (const [name, value] of Object.entries(extraQuery)) query.set(name, value);
  const search = query.toString();
  const body = override?.in === 'body' ? override.value : shape.body ? sampleOf(shape.body) : undefined;
  return { method: shape.method, path: search ? `${path}?${search}` : path, body };
}

/** True when an answer is a refusal by the request schema (as opposed to one by the service behind it). */
export function isSchemaRefusal(answer: { status: number; body: any }): boolean {
  return answer.status === 400 && answer.body?.error === 'validation_failed' && /^(body|querystring|params|headers)\b/.test(answer.body?.fault_message ?? '');
}

/** What the unit walk reads of the contract's string rules (kept apart so the support file needs no source import). */
export interface StringRules {
  storableTextPattern: string;
  unstorableCharacters: string;
}

/**
 * True when a pattern may let a NUL or an unpaired surrogate through: a `.`, a `\D`, `\W`, `\S`
 * or `\p{…}` class, or a negated class `[^…]` that does not exclude the unstorable characters
 * itself. Conservative: a pattern built only of positive classes and literals passes.
 */
export function patternAdmitsUnstorable(pattern: string, unstorableCharacters: string): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const character = pattern[i];
    if (character === '\\') {
      if (/[DWSPp]/.test(pattern[i + 1] ?? '')) return true;
      i++;
    } else if (character === '.') {
      return true;
    } else if (character === '[') {
      let end = i + 1;
      while (end < pattern.length && pattern[end] !== ']') end += pattern[end] === '\\' ? 2 : 1;
      const body = pattern.slice(i + 1, end);
      if (body.startsWith('^') && !body.includes(unstorableCharacters)) return true;
      if (/\\[DWSPp]/.test(body)) return true;
      i = end;
    }
  }
  return false;
}

/**
 * Why a request schema is not bounded the way the database needs (empty: it is). Every string is
 * a uuid or date-time, an enum, or has a maxLength and a pattern that refuses NUL and unpaired
 * surrogates (free text: the contract's own; any other pattern comes with a valid example, which
 * must stop matching wherever one of those is put into it); every integer and number has both
 * bounds, within what a JSON number holds exactly; every array a maxItems; every object refuses
 * unknown fields, and every map bounds its keys and their number.
 */
export function unboundedFieldsOf(schema: FieldSchema, where: string, rules: StringRules): string[] {
  if (schema.anyOf) return schema.anyOf.flatMap((member) => unboundedFieldsOf(member, where, rules));
  switch (typeOf(schema)) {
    case 'string':
      return stringProblems(schema, where, rules);
    case 'integer':
    case 'number': {
      const inRange = (bound: number | undefined) => typeof bound === 'number' && Math.abs(bound) <= Number.MAX_SAFE_INTEGER;
      return inRange(schema.minimum) && inRange(schema.maximum) ? [] : [`${where}: ${typeOf(schema)} without a minimum and a maximum within ±(2^53 - 1)`];
    }
    case 'boolean':
    case 'null':
      return [];
    case 'array': {
      const problems = typeof schema.maxItems === 'number' ? [] : [`${where}: array without maxItems`];
      return [...problems, ...unboundedFieldsOf(schema.items ?? {}, `${where}[]`, rules)];
    }
    case 'object': {
      const value = mapValueOf(schema);
      if (value) {
        const problems = typeof schema.maxProperties === 'number' ? [] : [`${where}: map without maxProperties`];
        if (!schema.propertyNames) problems.push(`${where}: map without propertyNames (its keys are unbounded)`);
        else problems.push(...stringProblems({ type: 'string', ...schema.propertyNames }, `${where} keys`, rules));
        return [...problems, ...unboundedFieldsOf(value, `${where}{}`, rules)];
      }
      const problems = schema.additionalProperties === false ? [] : [`${where}: object that accepts unknown fields`];
      return [...problems, ...Object.entries(schema.properties ?? {}).flatMap(([name, property]) => unboundedFieldsOf(property, `${where}.${name}`, rules))];
    }
    default:
      return [`${where}: accepts anything (no type)`];
  }
}

function stringProblems(schema: FieldSchema, where: string, rules: StringRules): string[] {
  if (schema.format === 'uuid' || schema.format === 'date-time' || schema.enum || schema.const !== undefined) return [];
  const problems: string[] = [];
  if (typeof schema.maxLength !== 'number') problems.push(`${where}: string without maxLength`);
  const pattern = schema.pattern;
  if (pattern === undefined) return [...problems, `${where}: string without a pattern (a NUL would reach the database)`];
  if (pattern === rules.storableTextPattern) return problems;
  if (patternAdmitsUnstorable(pattern, rules.unstorableCharacters))
    problems.push(`${where}: pattern ${pattern} may let a NUL or an unpaired surrogate through`);
  const example = exampleOf(schema);
  if (typeof example !== 'string') return [...problems, `${where}: pattern ${pattern} without an example`];
  const matches = (text: string) => new RegExp(pattern, 'u').test(text);
  if (!matches(example) || example.length > (schema.maxLength ?? Infinity) || example.length < (schema.minLength ?? 0)) {
    problems.push(`${where}: example ${JSON.stringify(example)} is not valid`);
  }
  for (let at = 0; at <= example.length; at++) {
    for (const character of ['\u0000', '\ud800']) {
      const probe = `${example.slice(0, at)}${character}${example.slice(at)}`;
      if (matches(probe)) problems.push(`${where}: pattern ${pattern} accepts ${JSON.stringify(probe)}`);
    }
  }
  return problems;
}
