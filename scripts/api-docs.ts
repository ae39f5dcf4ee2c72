/**
 * Renders the manager's and the agent's OpenAPI documents as docs/api.md and docs/agent-api.md:
 * `npm run docs:api`. A test checks the committed files match, so the references never drift
 * from the schemas that validate requests.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/kit/logger.js';
import { buildOpenApiDocument } from '../src/manager/http/openapi-document.js';
import { buildAgentOpenApiDocument } from '../src/agent/http/openapi-document.js';
import { STORABLE_TEXT_PATTERN } from '../src/contracts/schema.js';

interface Schema {
  type?: string | string[];
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  default?: unknown;
  additionalProperties?: boolean;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function typeOf(schema: Schema): string {
  if (schema.const !== undefined) return `\`${JSON.stringify(schema.const)}\``;
  if (schema.enum) return schema.enum.map((value) => `\`${JSON.stringify(value)}\``).join(' \\| ');
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(' \\| ');
  if (schema.type === 'array') return `${typeOf(schema.items ?? {})}[]`;
  const type = Array.isArray(schema.type) ? schema.type.join(' \\| ') : (schema.type ?? 'any');
  return schema.format ? `${type} (${schema.format})` : type;
}

function notes(schema: Schema): string {
  const parts: string[] = [];
  if (schema.description) parts.push(schema.description);
  if (schema.minimum !== undefined || schema.maximum !== undefined) parts.push(`${schema.minimum ?? ''}..${schema.maximum ?? ''}`);
  if (schema.minLength !== undefined || schema.maxLength !== undefined) parts.push(`length ${schema.minLength ?? 0}..${schema.maxLength ?? ''}`);
  // Free text's pattern only keeps out what the database cannot store: say so in words.
  if (schema.pattern === STORABLE_TEXT_PATTERN) parts.push('no NUL or unpaired surrogate');
  else if (schema.pattern) parts.push(`pattern \`${schema.pattern}\``);
  if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`);
  return parts.join('; ').replaceAll('|', '\\|');
}

function fields(schema: Schema, prefix = ''): string[] {
  const rows: string[] = [];
  const target = schema.type === 'array' && schema.items ? schema.items : schema;
  const arrayMark = schema.type === 'array' ? '[]' : '';
  for (const [name, property] of Object.entries(target.properties ?? {})) {
    const path = `${prefix}${arrayMark}${prefix || arrayMark ? '.' : ''}${name}`.replace(/^\./, '');
    rows.push(`| \`${path}\` | ${typeOf(property)} | ${target.required?.includes(name) ? 'yes' : 'no'} | ${notes(property)} |`);
    const inner = property.type === 'array' ? property.items : property;
    if (inner?.properties) rows.push(...fields(property, path));
  }
  return rows;
}

function table(schema: Schema): string[] {
  const rows = fields(schema);
  if (rows.length === 0) return [`\`${typeOf(schema)}\``, ''];
  const strict = (schema.type === 'array' ? schema.items : schema)?.additionalProperties === false;
  return ['| field | type | required | notes |', '| --- | --- | --- | --- |', ...rows, '', ...(strict ? ['Unknown fields are rejected (400).', ''] : [])];
}

export function renderApiMarkdown(document: any, title: string, servedBy: string, preface: string[] = []): string {
  const out: string[] = [
    `# ${title}`,
    '',
    `Version ${document.info.version}. Generated from the OpenAPI document ${servedBy} serves at \`GET /openapi.json\`, by \`npm run docs:api\`; do not edit by hand.`,
    '',
    ...preface,
    'Every answer that is not 2xx has the body `{ error, fault_message?, status, suggestion?, request_id }`: `error` is a stable code, `request_id` matches the `x-request-id` header and the server logs (send your own `x-request-id` to choose it).',
    '',
  ];
  for (const [path, operations] of Object.entries<any>(document.paths)) {
    for (const method of METHODS) {
      const operation = operations[method];
      if (!operation) continue;
      out.push(`## \`${method.toUpperCase()} ${path}\``, '', operation.summary ?? '', '');
      const parameters = (operation.parameters ?? []) as Array<{ in: string; name: string; required?: boolean; schema: Schema }>;
      if (parameters.length > 0) {
        out.push('| parameter | in | type | required | notes |', '| --- | --- | --- | --- | --- |');
        for (const parameter of parameters) {
          out.push(
            `| \`${parameter.name}\` | ${parameter.in} | ${typeOf(parameter.schema)} | ${parameter.required ? 'yes' : 'no'} | ${notes(parameter.schema)} |`,
          );
        }
        out.push('');
      }
      const body = operation.requestBody?.content?.['application/json']?.schema as Schema | undefined;
      if (body) out.push('Request body (JSON):', '', ...table(body));
      for (const [status, response] of Object.entries<any>(operation.responses ?? {})) {
        const schema = response.content?.['application/json']?.schema as Schema | undefined;
        if (Number(status) >= 400) {
          out.push(`**${status}**: error body.`, '');
          continue;
        }
        out.push(`**${status}**:`, '', ...(schema ? table(schema) : ['(no body)', '']));
      }
    }
  }
  return `${out
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trimEnd()}\n`;
}

/** Each generated reference: its file under docs/ and its text. */
export async function generateApiDocs(): Promise<Record<string, string>> {
  const logger = createLogger({ name: 'docs', level: 'silent' });
  return {
    'api.md': renderApiMarkdown(await buildOpenApiDocument(logger), 'Manager API reference', 'the manager'),
    'agent-api.md': renderApiMarkdown(await buildAgentOpenApiDocument(logger), 'Agent API reference', 'each agent', [
      "The manager is the agent's only intended caller. Every request, `/metrics` and `/openapi.json` included, needs `Authorization: Bearer <host credential>`; without it the answer is 401 before routing.",
      '',
    ]),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [file, text] of Object.entries(await generateApiDocs())) {
    const target = fileURLToPath(new URL(`../docs/${file}`, import.meta.url));
    writeFileSync(target, text);
    process.stdout.write(`wrote ${target}\n`);
  }
}
