import {
  CreateJoinTokenRequest,
  EnrollRequest,
  EnrollResponse,
  HeartbeatRequest,
  Host,
  HostIdParams,
  HostList,
  JOIN_TOKEN_DEFAULT_TTL_SECONDS,
  JoinToken,
  HeartbeatResponse,
} from '../../../contracts/host-api.js';
import { ErrorBody } from '../../../contracts/errors.js';
import { SecretAnswer } from '../../../contracts/secret-answer.js';
import type { HttpServer } from '../../../http/http-server.js';
import { bearerOf } from '../../../http/bearer.js';
import type { ManagerServices } from '../manager-services.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody };

/** Audit actions of the ways an enrollment can go. */
const ENROLL_ACTION = { enrolled: 'host.enroll', reenrolled: 'host.reenroll', replaced: 'host.replace' } as const;

export function registerHostRoutes(app: HttpServer, services: ManagerServices): void {
  const { hosts } = services;

  app.get(
    '/v1/hosts',
    {
      config: { access: { resource: 'host', verb: 'read' } },
      schema: { summary: 'List hosts', tags: ['hosts'], response: { 200: HostList } },
    },
    async () => ({ items: await hosts.list() }),
  );

  app.get(
    '/v1/hosts/:id',
    {
      config: { access: { resource: 'host', verb: 'read' } },
      schema: { summary: 'One host', tags: ['hosts'], params: HostIdParams, response: { 200: Host, ...errors } },
    },
    async (request) => hosts.get(request.params.id),
  );

  app.post(
    '/v1/hosts/join-tokens',
    {
      config: { access: { resource: 'host', verb: 'write', action: 'host.join_token' } },
      schema: {
        summary: 'Mint a single-use, time-limited join token for a new agent',
        tags: ['hosts'],
        body: CreateJoinTokenRequest,
        response: {
          201: SecretAnswer(JoinToken, ['token'], 'Mint another join token (POST /v1/hosts/join-tokens); an unused one expires by itself.'),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const token = await hosts.mintJoinToken(request.body?.ttl_seconds ?? JOIN_TOKEN_DEFAULT_TTL_SECONDS, request.body?.replace_host);
      return reply.status(201).send(token);
    },
  );

  app.post(
    '/v1/hosts/:id/rotate-credential',
    {
      config: { access: { resource: 'host', verb: 'write', action: 'host.rotate_credential' } },
      schema: {
        summary: "Replace a host's credential in place (the agent takes the new one; the old one stops working within a minute)",
        tags: ['hosts'],
        params: HostIdParams,
        response: { 200: Host, ...errors, 503: ErrorBody },
      },
    },
    async (request) => hosts.rotateCredential(request.params.id),
  );

  app.post(
    '/v1/hosts/enroll',
    {
      config: { access: { public: true, resource: 'host', action: 'host.enroll' } },
      schema: {
        summary:
          'Enroll an agent with a join token; answers its per-host credential once. The name of a ready host is refused (409) unless the token was minted to replace it; an unreachable host of that name is taken over',
        tags: ['hosts'],
        body: EnrollRequest,
        response: {
          201: SecretAnswer(
            EnrollResponse,
            ['credential'],
            'The credential is not kept in the clear, so it cannot be shown again: enroll again with a new join token (the host keeps its id once it is unreachable).',
          ),
          ...errors,
          409: ErrorBody,
        },
      },
    },
    async (request, reply) => {
      const enrolled = await hosts.enroll(request.body, request.ip);
      request.audit = {
        ...request.audit,
        actor: enrolled.joinTokenId === undefined ? undefined : `join_token:${enrolled.joinTokenId}`,
        action: enrolled.ok ? ENROLL_ACTION[enrolled.kind] : 'host.enroll',
        resourceId: enrolled.ok ? enrolled.host.id : (enrolled.hostId ?? null),
      };
      if (!enrolled.ok) throw enrolled.error;
      return reply.status(201).send({
        host_id: enrolled.host.id,
        credential: enrolled.credential,
        heartbeat_interval_ms: enrolled.heartbeatIntervalMs,
      });
    },
  );

  app.post(
    '/v1/hosts/:id/heartbeat',
    {
      config: { access: { public: true, audit: false } },
      schema: {
        summary: "An agent's heartbeat (bearer: the host credential)",
        tags: ['hosts'],
        params: HostIdParams,
        body: HeartbeatRequest,
        response: { 200: HeartbeatResponse, ...errors },
      },
    },
    async (request) => {
      return { heartbeat_interval_ms: await hosts.heartbeat(request.params.id, bearerOf(request), request.body, request.ip) };
    },
  );
}
