/**
 * Firecracker's API contract (firecracker-api-contract.ts) as a request and response checker for
 * tests. It is strict the way Firecracker's serde is: unknown fields are refused (except in the
 * Metrics body, which Firecracker parses leniently), so a driver that sends a field its target
 * version lacks fails here rather than on a real host. '1.16' is main's API without the v1.16.1
 * differences that file lists.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import {
  type FirecrackerApiContract,
  type FirecrackerApiVersion,
  type FirecrackerOperation,
  type JsonSchema,
  firecrackerApiContract,
} from './firecracker-api-contract.js';

export type { FirecrackerApiVersion } from './firecracker-api-contract.js';

export interface ContractViolation {
  message: string;
}

export interface FirecrackerContract {
  /**
   * undefined when method+path+body satisfy the contract for this version; else why not. Path is like
   * '/drives/rootfs' (path params matched against the contract's templated paths; the id in the path
   * must be a non-empty [A-Za-z0-9_] string). A body for GET must be absent.
   */
  check(method: string, path: string, body: unknown): string | undefined;
  /** The response schema check for GETs that answer JSON (e.g. '/' -> InstanceInfo): undefined when fine. */
  checkResponse(method: string, path: string, status: number, body: unknown): string | undefined;
}

// ajv-formats is CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

const ID_SEGMENT = /^[A-Za-z0-9_]+$/;

const cache = new Map<FirecrackerApiVersion, FirecrackerContract>();

/** The contract for a version, built once and cached. */
export function firecrackerContract(version: FirecrackerApiVersion): FirecrackerContract {
  let contract = cache.get(version);
  if (!contract) {
    contract = new SchemaContract(firecrackerApiContract(version));
    cache.set(version, contract);
  }
  return contract;
}

class SchemaContract implements FirecrackerContract {
  private readonly ajv: Ajv;
  private readonly schemaId: string;
  private readonly validators = new Map<JsonSchema, ValidateFunction>();

  constructor(private readonly api: FirecrackerApiContract) {
    this.schemaId = `firecracker-${api.version}.json`;
    // No defaults, no coercion: the checker must see the body exactly as it goes on the wire.
    this.ajv = addFormats(new Ajv({ strict: false, allErrors: false, useDefaults: false, coerceTypes: false }));
    this.ajv.addSchema({ $id: this.schemaId, definitions: api.definitions });
  }

  check(method: string, path: string, body: unknown): string | undefined {
    const found = this.find(method, path);
    if (typeof found === 'string') return found;
    const { operation, params } = found;
    const upper = method.toUpperCase();
    if (upper === 'GET') return body === undefined ? undefined : 'GET request cannot have a body.';
    if (body === undefined) {
      // Firecracker refuses every empty PUT/PATCH except where the body is optional.
      return operation.body && !operation.body.optional ? `Empty ${upper} request.` : undefined;
    }
    if (!operation.body) return undefined;
    const violation = describe(this.validator(operation.body.schema), body);
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
    const { responses } = found.operation;
    const schema = Object.hasOwn(responses, String(status)) ? responses[String(status)] : responses.default;
    if (schema === undefined) return `the contract lists no ${status} answer for ${method} ${path}`;
    if (schema === null) return body === undefined ? undefined : `a ${status} answer to ${method} ${path} has no body in the contract`;
    return describe(this.validator(schema), body);
  }

  /** The operation for method+path, with the path params; or why there is none. */
  private find(method: string, path: string): { operation: FirecrackerOperation; params: Record<string, string> } | string {
    const segments = path.split('?')[0]!.split('/').slice(1);
    const key = method.toLowerCase();
    for (const [template, operations] of Object.entries(this.api.operations)) {
      const parts = template.split('/').slice(1);
      if (parts.length !== segments.length) continue;
      const params: Record<string, string> = {};
      const matches = parts.every((part, index) => {
        const segment = segments[index]!;
        if (!part.startsWith('{')) return part === segment;
        params[part.slice(1, -1)] = segment;
        return true;
      });
      const operation = Object.hasOwn(operations, key) ? operations[key as keyof typeof operations] : undefined;
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
  private validator(schema: JsonSchema): ValidateFunction {
    let validate = this.validators.get(schema);
    if (!validate) {
      validate = this.ajv.compile(rebase(schema, this.schemaId) as JsonSchema);
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

/** Firecracker's rule beside the schema: exactly one of `mem_backend` and `mem_file_path`. */
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
