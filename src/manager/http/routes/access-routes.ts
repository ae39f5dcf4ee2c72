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
import type { HttpServer } from '../../../kit/http/http-server.js';
import type { ManagerServices } from '../manager-server.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

/** Tokens, projects and the audit log: admin only (see domain/access-policy). */
export function registerAccessRoutes(app: HttpServer, services: ManagerServices): void {
  const { access, auditLog } = services;

  app.post(
    '/v1/tokens',
    {
      config: { access: { resource: 'token', verb: 'write', action: 'token.create' } },
      schema: { summary: 'Mint an API token; its secret is in this answer only', tags: ['access'], body: CreateTokenRequest, response: { 201: TokenWithSecret, ...errors } },
    },
    async (request, reply) => reply.status(201).send(await access.mint(request.body)),
  );

  app.get(
    '/v1/tokens',
    { config: { access: { resource: 'token', verb: 'read' } }, schema: { summary: 'List API tokens (never their secrets)', tags: ['access'], response: { 200: TokenList, ...errors } } },
    async () => ({ items: await access.list() }),
  );

  app.post(
    '/v1/tokens/:id/rotate',
    {
      config: { access: { resource: 'token', verb: 'write', action: 'token.rotate' } },
      schema: { summary: 'A new secret for a token; the old one works overlap_seconds longer', tags: ['access'], params: TokenIdParams, body: RotateTokenRequest, response: { 200: TokenWithSecret, ...errors } },
    },
    async (request) => access.rotate(request.params.id, request.body?.overlap_seconds ?? 0),
  );

  app.delete(
    '/v1/tokens/:id',
    {
      config: { access: { resource: 'token', verb: 'write', action: 'token.revoke' } },
      schema: { summary: 'Revoke a token (refused by every manager within a second)', tags: ['access'], params: TokenIdParams, response: { 200: Token, ...errors } },
    },
    async (request) => access.revoke(request.params.id),
  );

  app.get(
    '/v1/projects',
    { config: { access: { resource: 'project', verb: 'read' } }, schema: { summary: 'List projects and their quotas', tags: ['access'], response: { 200: ProjectList, ...errors } } },
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
      schema: { summary: "Change a project's quotas (null: unlimited)", tags: ['access'], params: ProjectNameParams, body: ProjectQuotas, response: { 200: Project, ...errors } },
    },
    async (request) => access.setQuotas(request.params.name, request.body),
  );

  app.get(
    '/v1/audit',
    {
      config: { access: { resource: 'audit', verb: 'read' } },
      schema: { summary: 'The audit log: every mutating call, denied ones too (?format=ndjson exports it)', tags: ['access'], querystring: AuditQuery, response: { 200: AuditList, ...errors } },
    },
    async (request, reply) => {
      const items = await auditLog.query(request.query);
      if (request.query.format !== 'ndjson') return { items };
      // An export: one entry per line, sent as it is (the JSON response schema describes ?format=json).
      const lines = items.map((item) => `${JSON.stringify(item)}\n`).join('');
      return reply.type('application/x-ndjson').serializer((payload: string) => payload).send(lines as never);
    },
  );
}
