/**
 * Firecracker's API contract, read from the swagger in shared/reference, as a request and response
 * checker for tests. It is strict the way Firecracker's serde is: unknown fields are refused (except
 * in the Metrics body, which Firecracker parses leniently), so a driver that sends a field its target
 * version lacks fails here rather than on a real host. '1.16' is the swagger with the v1.16.1
 * differences its header lists taken out.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

export type FirecrackerApiVersion = '1.16' | '1.17';

export interface ContractViolation {
  message: string;
}

export interface FirecrackerContract {
  /**
   * undefined when method+path+body satisfy the swagger for this version; else why not. Path is like
   * '/drives/rootfs' (path params matched against the swagger's templated paths; the id in the path
   * must be a non-empty [A-Za-z0-9_] string). A body for GET must be absent.
   */
  check(method: string, path: string, body: unknown): string | undefined;
  /** The response schema check for GETs that answer JSON (e.g. '/' -> InstanceInfo): undefined when fine. */
  checkResponse(method: string, path: string, status: number, body: unknown): string | undefined;
}

// ajv-formats is CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** CI clones the repo with shared/ beside it, so the swagger is read in place, never copied in. */
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const swaggerPath = join(repoRoot, '..', 'shared', 'reference', 'firecracker-api.yaml');

type Schema = Record<string, unknown>;
interface Parameter {
  in: string;
  name: string;
  required?: boolean;
  schema?: Schema;
}
interface Operation {
  parameters?: Parameter[];
  responses?: Record<string, { schema?: Schema }>;
}
interface Swagger {
  paths: Record<string, Record<string, Operation>>;
  definitions: Record<string, Schema>;
}

/** Formats the swagger uses that Ajv knows; any other `format` is a regex in disguise (MMDS ipv4_address). */
const KNOWN_FORMATS = new Set(['int32', 'int64']);
const ID_SEGMENT = /^[A-Za-z0-9_]+$/;

const cache = new Map<FirecrackerApiVersion, FirecrackerContract>();

/** Loads (once, cached) the contract for a version. */
export function firecrackerContract(version: FirecrackerApiVersion): FirecrackerContract {
  let contract = cache.get(version);
  if (!contract) {
    contract = new SwaggerContract(version, loadSwagger(version));
    cache.set(version, contract);
  }
  return contract;
}

function loadSwagger(version: FirecrackerApiVersion): Swagger {
  const swagger = parse(readFileSync(swaggerPath, 'utf8')) as Swagger;
  const definitions = swagger.definitions;
  for (const [name, schema] of Object.entries(definitions)) if (name !== 'Metrics') closeObjects(schema);
  for (const operations of Object.values(swagger.paths)) closeObjects(operations);
  if (version === '1.16') removeMainOnlyInputs(definitions);
  patchMachineConfigIsPartial(swagger);
  return swagger;
}

/**
 * serde's deny_unknown_fields as JSON Schema: every object schema with properties refuses others.
 * Metrics is left open on purpose (Firecracker ignores unknown metrics fields), so the walk skips it.
 */
function closeObjects(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(closeObjects);
  if (typeof node !== 'object' || node === null) return;
  const schema = node as Schema;
  if (typeof schema.format === 'string' && !KNOWN_FORMATS.has(schema.format)) {
    schema.pattern = `^(?:${schema.format})$`;
    delete schema.format;
  }
  if (typeof schema.properties === 'object' && schema.additionalProperties === undefined) schema.additionalProperties = false;
  for (const [key, value] of Object.entries(schema)) {
    // Under `properties` the keys are field names, so a field called `format` is not a keyword.
    if (key === 'properties') Object.values(value as Schema).forEach(closeObjects);
    else closeObjects(value);
  }
}

/**
 * Where the swagger and the code disagree, the code is what a real binary does: the swagger gives
 * PATCH /machine-config the PUT body with its required fields, but Firecracker takes any subset.
 */
function patchMachineConfigIsPartial(swagger: Swagger): void {
  const partial = { ...swagger.definitions.MachineConfiguration };
  delete partial.required;
  swagger.definitions.MachineConfigurationUpdate = partial;
  const body = swagger.paths['/machine-config']?.patch?.parameters?.find((param) => param.in === 'body');
  if (body) body.schema = { $ref: '#/definitions/MachineConfigurationUpdate' };
}

/** What the header says v1.16.1 lacks; the fields go, so strict checking then refuses them. */
function removeMainOnlyInputs(definitions: Record<string, Schema>): void {
  const props = (name: string) => definitions[name]?.properties as Record<string, Schema>;
  const hugePages = props('MachineConfiguration').huge_pages as { enum: string[] };
  hugePages.enum = hugePages.enum.filter((value) => value !== 'Transparent');
  delete props('Metrics').emit_id;
  delete props('Metrics').properties;
  delete props('SnapshotLoadParams').huge_pages;
  for (const name of ['MemoryHotplugConfig', 'MemoryHotplugSizeUpdate']) {
    for (const field of Object.values(props(name))) delete field.maximum;
  }
}

class SwaggerContract implements FirecrackerContract {
  private readonly ajv: Ajv;
  private readonly schemaId: string;
  private readonly validators = new Map<Schema, ValidateFunction>();

  constructor(
    version: FirecrackerApiVersion,
    private readonly swagger: Swagger,
  ) {
    this.schemaId = `firecracker-${version}.json`;
    // No defaults, no coercion: the checker must see the body exactly as it goes on the wire.
    this.ajv = addFormats(new Ajv({ strict: false, allErrors: false, useDefaults: false, coerceTypes: false }));
    this.ajv.addSchema({ $id: this.schemaId, definitions: swagger.definitions });
  }

  check(method: string, path: string, body: unknown): string | undefined {
    const found = this.find(method, path);
    if (typeof found === 'string') return found;
    const { operation, params } = found;
    const upper = method.toUpperCase();
    if (upper === 'GET') return body === undefined ? undefined : 'GET request cannot have a body.';
    const bodyParam = operation.parameters?.find((param) => param.in === 'body');
    if (body === undefined) {
      // Firecracker refuses every empty PUT/PATCH except where the body is explicitly optional.
      return bodyParam && bodyParam.required !== false ? `Empty ${upper} request.` : undefined;
    }
    if (!bodyParam?.schema) return undefined;
    const violation = describe(this.validator(bodyParam.schema), body);
    if (violation) return violation;
    // Path params are the resource ids (drive_id, iface_id, id), named as in the body.
    for (const [name, value] of Object.entries(params)) {
      if ((body as Record<string, unknown>)[name] !== value) return 'The id from the path does not match the id from the body!';
    }
    return memBackendRule(path, body as Record<string, unknown>);
  }

  checkResponse(method: string, path: string, status: number, body: unknown): string | undefined {
    const found = this.find(method, path);
    if (typeof found === 'string') return found;
    const responses = found.operation.responses ?? {};
    const response = responses[String(status)] ?? responses.default;
    if (!response) return `the swagger lists no ${status} answer for ${method} ${path}`;
    if (!response.schema) return body === undefined ? undefined : `a ${status} answer to ${method} ${path} has no body in the swagger`;
    return describe(this.validator(response.schema), body);
  }

  /** The operation for method+path, with the path params; or why there is none. */
  private find(method: string, path: string): { operation: Operation; params: Record<string, string> } | string {
    const segments = path.split('?')[0]!.split('/').slice(1);
    for (const [template, operations] of Object.entries(this.swagger.paths)) {
      const parts = template.split('/').slice(1);
      if (parts.length !== segments.length) continue;
      const params: Record<string, string> = {};
      const matches = parts.every((part, index) => {
        const segment = segments[index]!;
        if (!part.startsWith('{')) return part === segment;
        params[part.slice(1, -1)] = segment;
        return true;
      });
      const operation = Object.hasOwn(operations, method.toLowerCase()) ? operations[method.toLowerCase()] : undefined;
      if (!matches || !operation) continue;
      if (Object.values(params).some((id) => !ID_SEGMENT.test(id))) {
        return 'API Resource IDs can only contain alphanumeric characters and underscores.';
      }
      return { operation, params };
    }
    // Firecracker names the first path token, without the slash: "PUT vm.".
    return `Invalid request method and/or path: ${method.toUpperCase()} ${segments[0] ?? ''}.`;
  }

  /** Compiled on first use: most tests touch a handful of operations. */
  private validator(schema: Schema): ValidateFunction {
    let validate = this.validators.get(schema);
    if (!validate) {
      validate = this.ajv.compile(rebase(schema, this.schemaId) as Schema);
      this.validators.set(schema, validate);
    }
    return validate;
  }
}

/** Points `#/definitions/X` at the one definitions schema, so operation schemas can stand alone. */
function rebase(node: unknown, schemaId: string): unknown {
  if (Array.isArray(node)) return node.map((item) => rebase(item, schemaId));
  if (typeof node !== 'object' || node === null) return node;
  return Object.fromEntries(
    Object.entries(node).map(([key, value]) => [key, key === '$ref' && typeof value === 'string' ? `${schemaId}${value}` : rebase(value, schemaId)]),
  );
}

/** The swagger says it in prose: exactly one of `mem_backend` and `mem_file_path`. */
function memBackendRule(path: string, body: Record<string, unknown>): string | undefined {
  if (path !== '/snapshot/load') return undefined;
  const given = ['mem_backend', 'mem_file_path'].filter((field) => body[field] !== undefined).length;
  if (given === 0) return 'missing field: either `mem_backend` or `mem_file_path` is required';
  if (given === 2) return 'too many fields: either `mem_backend` or `mem_file_path` exclusively is required';
  return undefined;
}

/** serde-like wording for the first violation, with where it is. */
function describe(validate: ValidateFunction, body: unknown): string | undefined {
  if (validate(body)) return undefined;
  const error = validate.errors?.[0] as ErrorObject;
  const at = error.instancePath ? ` at ${error.instancePath}` : '';
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties':
      return `unknown field \`${String(params.additionalProperty)}\`${at}`;
    case 'required':
      return `missing field \`${String(params.missingProperty)}\`${at}`;
    case 'type':
      return `invalid type${at}: expected ${String(params.type)}`;
    case 'enum':
      return `unknown variant${at}: expected one of ${(params.allowedValues as unknown[]).map((value) => `\`${String(value)}\``).join(', ')}`;
    default:
      return `invalid value${at}: ${error.message ?? error.keyword}`;
  }
}
