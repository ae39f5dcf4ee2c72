import { type FirecrackerApiContract, type FirecrackerOperation, type JsonSchema, withoutMainOnlyInputs } from '../doubles/firecracker-api-contract.js';

/** The parts of a Swagger 2.0 document (Firecracker's API description) the comparison reads. */
export interface SwaggerDocument {
  info: { version: string };
  paths: Record<string, Record<string, SwaggerOperation>>;
  definitions: Record<string, SwaggerSchema>;
}
interface SwaggerOperation {
  parameters?: { in: string; required?: boolean; schema?: SwaggerSchema }[];
  responses?: Record<string, { schema?: SwaggerSchema }>;
}
type SwaggerSchema = Record<string, unknown>;

/** Words for people, not constraints: never compared. */
const PROSE = new Set(['description', 'default', 'example', 'readOnly', 'title']);
/** Formats that are formats; any other `format` in Firecracker's swagger is a regex (the MMDS address). */
const REAL_FORMATS = new Set(['int32', 'int64']);
/** Patterns cannot be compared as text: two regexes agree when they judge these alike. */
const PATTERN_PROBES = [
  '169.254.169.254',
  '169.254.1.0',
  '169.254.254.255',
  '169.254.0.1',
  '169.254.255.1',
  '169.254.1.256',
  '169.253.1.1',
  '10.0.0.1',
  '169.254.1',
  '',
];

/**
 * Differences between our contract and an official swagger, one readable line each; empty when
 * they agree on every path and method, and on every schema's properties, types, formats, required
 * lists, enums, bounds and patterns. The swagger is first given our documented deliberate
 * differences (firecracker-api-contract.ts): objects closed except Metrics, a partial PATCH
 * /machine-config body, a body required unless the swagger says `required: false`, and, when
 * `withoutMainOnly`, main's additions taken out (to compare the 1.16 contract with main's swagger).
 */
export function firecrackerSwaggerDiff(ours: FirecrackerApiContract, swagger: SwaggerDocument, options: { withoutMainOnly?: boolean } = {}): string[] {
  const differences: string[] = [];
  let definitions: Record<string, SwaggerSchema> = Object.fromEntries(
    Object.entries(swagger.definitions).map(([name, schema]) => [name, normalize(schema, name !== 'Metrics')]),
  );
  if (options.withoutMainOnly) {
    try {
      definitions = withoutMainOnlyInputs(definitions as Record<string, JsonSchema>) as Record<string, SwaggerSchema>;
    } catch (error) {
      differences.push((error as Error).message);
    }
  }
  // Deliberate: PATCH /machine-config takes any subset of the PUT body.
  if (definitions.MachineConfiguration) {
    const partial = { ...definitions.MachineConfiguration };
    delete partial.required;
    definitions.MachineConfigurationUpdate = partial;
  }

  for (const name of union(Object.keys(ours.definitions), Object.keys(definitions))) {
    const where = `definition ${name}`;
    if (!Object.hasOwn(ours.definitions, name)) differences.push(`${where}: in the swagger, not in ours`);
    else if (!Object.hasOwn(definitions, name)) differences.push(`${where}: in ours, not in the swagger`);
    else compareSchema(ours.definitions[name]!, definitions[name]!, where, differences);
  }

  const theirOperations = new Map<string, SwaggerOperation>();
  for (const [path, methods] of Object.entries(swagger.paths))
    for (const [method, operation] of Object.entries(methods)) theirOperations.set(`${method.toUpperCase()} ${path}`, operation);
  const ourOperations = new Map<string, FirecrackerOperation>(
    Object.entries(ours.operations).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => [`${method.toUpperCase()} ${path}`, operation] as const),
    ),
  );
  for (const key of union([...ourOperations.keys()], [...theirOperations.keys()])) {
    const mine = ourOperations.get(key);
    const theirs = theirOperations.get(key);
    if (!mine) {
      differences.push(`${key}: in the swagger, not in ours`);
      continue;
    }
    if (!theirs) {
      differences.push(`${key}: in ours, not in the swagger`);
      continue;
    }
    const bodyParam = theirs.parameters?.find((param) => param.in === 'body');
    let theirBody = bodyParam?.schema ? normalize(bodyParam.schema, true) : undefined;
    if (key === 'PATCH /machine-config' && theirBody?.$ref === '#/definitions/MachineConfiguration')
      theirBody = { $ref: '#/definitions/MachineConfigurationUpdate' };
    if (!mine.body !== !theirBody) differences.push(`${key} body: ${mine.body ? 'ours has one, the swagger none' : 'the swagger has one, ours none'}`);
    if (mine.body && theirBody) {
      // Firecracker refuses an empty PUT/PATCH unless the swagger says the body may be left out.
      const optional = bodyParam?.required === false;
      if (Boolean(mine.body.optional) !== optional)
        differences.push(`${key} body: ${mine.body.optional ? 'optional' : 'required'} in ours, ${optional ? 'optional' : 'required'} in the swagger`);
      compareSchema(mine.body.schema, theirBody, `${key} body`, differences);
    }
    const theirResponses = theirs.responses ?? {};
    for (const status of union(Object.keys(mine.responses), Object.keys(theirResponses))) {
      const where = `${key} answer ${status}`;
      if (!Object.hasOwn(mine.responses, status)) differences.push(`${where}: in the swagger, not in ours`);
      else if (!Object.hasOwn(theirResponses, status)) differences.push(`${where}: in ours, not in the swagger`);
      else {
        const mySchema = mine.responses[status] ?? null;
        const theirSchema = theirResponses[status]!.schema;
        if ((mySchema === null) !== (theirSchema === undefined))
          differences.push(`${where}: ${mySchema === null ? 'no body in ours, a body in the swagger' : 'a body in ours, none in the swagger'}`);
        else if (mySchema && theirSchema) compareSchema(mySchema, normalize(theirSchema, true), where, differences);
      }
    }
  }
  return differences;
}

/**
 * The swagger's schema as ours states it: prose dropped, a regex `format` as a `pattern`, and
 * (when `close`) every object with properties closed, as Firecracker's serde refuses unknown fields.
 */
function normalize(node: unknown, close: boolean): SwaggerSchema {
  const schema = node as SwaggerSchema;
  const out: SwaggerSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (PROSE.has(key)) continue;
    if (key === 'format' && typeof value === 'string' && !REAL_FORMATS.has(value)) out.pattern = `^(?:${value})$`;
    else if (key === 'properties')
      out.properties = Object.fromEntries(Object.entries(value as SwaggerSchema).map(([name, field]) => [name, normalize(field, close)]));
    else if ((key === 'items' || key === 'additionalProperties') && typeof value === 'object' && value !== null) out[key] = normalize(value, close);
    else out[key] = value;
  }
  if (close && out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

function compareSchema(ours: JsonSchema | SwaggerSchema, theirs: SwaggerSchema, where: string, differences: string[]): void {
  const mine = ours as SwaggerSchema;
  for (const key of union(Object.keys(mine), Object.keys(theirs))) {
    const a = mine[key];
    const b = theirs[key];
    if (key === 'properties' && isObject(a) && isObject(b)) {
      for (const name of union(Object.keys(a), Object.keys(b))) {
        if (!Object.hasOwn(a, name)) differences.push(`${where}.${name}: in the swagger, not in ours`);
        else if (!Object.hasOwn(b, name)) differences.push(`${where}.${name}: in ours, not in the swagger`);
        else compareSchema(a[name] as SwaggerSchema, b[name] as SwaggerSchema, `${where}.${name}`, differences);
      }
    } else if ((key === 'items' || key === 'additionalProperties') && isObject(a) && isObject(b)) {
      compareSchema(a, b, `${where}[${key}]`, differences);
    } else if ((key === 'required' || key === 'enum') && Array.isArray(a) && Array.isArray(b)) {
      if (show([...a].sort()) !== show([...b].sort())) differences.push(`${where} ${key}: ours ${show(a)}, the swagger's ${show(b)}`);
    } else if (key === 'pattern' && typeof a === 'string' && typeof b === 'string') {
      const disagree = PATTERN_PROBES.filter((probe) => new RegExp(a).test(probe) !== new RegExp(b).test(probe));
      if (disagree.length > 0) differences.push(`${where} pattern: ours and the swagger's judge ${show(disagree)} differently`);
    } else if (show(a) !== show(b)) {
      differences.push(`${where} ${key}: ours ${show(a)}, the swagger's ${show(b)}`);
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  return value === undefined ? 'none' : JSON.stringify(value);
}

function union(a: string[], b: string[]): string[] {
  return [...new Set([...a, ...b])].sort();
}
