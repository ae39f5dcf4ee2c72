import { Readable } from 'node:stream';
import {
  AuditList,
  AuditQuery,
  CreateProjectRequest,
  CreateTokenRequest,
  Project,
  ProjectList,
  ProjectNameParams,
  ProjectQuotas,
  RotateTokenRequest,
  Token,
  TokenIdParams,
  TokenList,
  TokenWithSecret,
} from '../../../contracts/access-api.js';
import { ErrorBody } from '../../../contracts/errors.js';
import { SecretAnswer } from '../../../contracts/secret-answer.js';
import { AccessWatch } from '../../../http/access-watch.js';
import type { HttpServer } from '../../../http/http-server.js';
import type { ManagerServices } from '../manager-services.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
/** A token's answer when it carries a new secret; a replay of the call withholds it. */
const MintedToken = SecretAnswer(
  TokenWithSecret,
  ['token'],
  'POST /v1/tokens/:id/rotate gives the token a new secret (its id is in this answer); DELETE /v1/tokens/:id revokes it.',
);

/** Tokens, projects and the audit log: admin only (see domain/access-policy). */
export function registerAccessRoutes(app: HttpServer, services: ManagerServices): void {
  const { access, auditLog } = services;

  app.post(
    '/v1/tokens',
    {
      config: { access: { resource: 'token', verb: 'write', action: 'token.create' } },
      schema: {
        summary: 'Mint an API token; its secret is in this answer only',
        tags: ['access'],
        body: CreateTokenRequest,
        response: { 201: MintedToken, ...errors },
      },
    },
    async (request, reply) => reply.status(201).send(await access.mint(request.body)),
  );

  app.get(
    '/v1/tokens',
    {
      config: { access: { resource: 'token', verb: 'read' } },
      schema: { summary: 'List API tokens (never their secrets)', tags: ['access'], response: { 200: TokenList, ...errors } },
    },
    async () => ({ items: await access.list() }),
  );

  app.post(
    '/v1/tokens/:id/rotate',
    {
      config: { access: { resource: 'token', verb: 'write', action: 'token.rotate' } },
      schema: {
        summary: 'A new secret for a token; the old one works overlap_seconds longer',
        tags: ['access'],
        params: TokenIdParams,
        body: RotateTokenRequest,
        response: { 200: MintedToken, ...errors },
      },
    },
    async (request) => access.rotate(request.params.id, request.body?.overlap_seconds ?? 0),
  );

  app.delete(
    '/v1/tokens/:id',
    {
      config: { access: { resource: 'token', verb: 'write', action: 'token.revoke' } },
      schema: {
        summary: 'Revoke a token (refused by every manager within a second)',
        tags: ['access'],
        params: TokenIdParams,
        response: { 200: Token, ...errors },
      },
    },
    async (request) => access.revoke(request.params.id),
  );

  app.get(
    '/v1/projects',
    {
      config: { access: { resource: 'project', verb: 'read' } },
      schema: { summary: 'List projects and their quotas', tags: ['access'], response: { 200: ProjectList, ...errors } },
    },
    async () => ({ items: await access.listProjects() }),
  );

  app.post(
    '/v1/projects',
    {
      config: { access: { resource: 'project', verb: 'write', action: 'project.create' } },
      schema: { summary: 'Create a project, with quotas', tags: ['access'], body: CreateProjectRequest, response: { 201: Project, ...errors } },
    },
    async (request, reply) => reply.status(201).send(await access.createProject(request.body)),
  );

  app.patch(
    '/v1/projects/:name',
    {
      config: { access: { resource: 'project', verb: 'write', action: 'project.quota' } },
      schema: {
        summary: "Change a project's quotas (null: unlimited)",
        tags: ['access'],
        params: ProjectNameParams,
        body: ProjectQuotas,
        response: { 200: Project, ...errors },
      },
    },
    async (request) => access.setQuotas(request.params.name, request.body),
  );

  app.get(
    '/v1/audit',
    {
      config: { access: { resource: 'audit', verb: 'read' } },
      schema: {
        summary: 'The audit log: every mutating call, denied ones too; pages newest first (?format=ndjson exports every entry, oldest first)',
        tags: ['access'],
        querystring: AuditQuery,
        response: { 200: AuditList, ...errors },
      },
    },
    async (request, reply) => {
      if (request.query.format !== 'ndjson') return auditLog.page(request.query);
      const entries = await auditLog.export(request.query);
      // An export may run for minutes: it stops when the caller's token lapses (see linesOf).
      const watch = new AccessWatch(request.accessGuard);
      reply.raw.once('close', () => watch.stop());
      // An export: one entry per line, streamed as the batches are read (the JSON response schema describes ?format=json).
      return reply.type('application/x-ndjson').send(Readable.from(linesOf(entries, watch)) as never);
    },
  );
}

/**
 * The export's lines, until the caller's access lapses: then the stream fails, and the answer is
 * cut off without the end of its chunked body, so no client takes what it got for the whole
 * export (before the first line, it is the error itself, in the error contract).
 */
async function* linesOf(entries: AsyncIterable<unknown>, watch: AccessWatch): AsyncGenerator<string> {
  try {
    for await (const entry of entries) {
      watch.lapsed.throwIfAborted();
      yield `${JSON.stringify(entry)}\n`;
    }
  } finally {
    watch.stop();
  }
}
