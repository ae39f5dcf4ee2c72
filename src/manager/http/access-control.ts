import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpServer } from '../../kit/http/http-server.js';
import { bearerOf } from '../../kit/http/bearer.js';
import { NexusError, messageOf } from '../../kit/nexus-error.js';
import type { AccessService } from '../app/access-service.js';
import { type Principal, type ResourceKind, type Verb, decide } from '../domain/access-policy.js';
import type { AuditRepo } from '../ports/access-repos.js';

/**
 * What a route needs, declared next to it (`config.access`). A route that declares nothing is
 * for admins only, so a new route is closed until someone opens it on purpose.
 */
export type RouteAccess =
  | { public: true; audit?: false; action?: string; resource?: string }
  | {
      public?: false;
      resource: ResourceKind;
      verb: Verb;
      /** The audit action, e.g. `vm.create`; `{action}` is replaced by the route's :action. Default `<resource>.<verb>`. */
      action?: string;
    };

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: RouteAccess;
  }
  interface FastifyRequest {
    principal?: Principal;
    audit?: { id?: string; after?: unknown; resourceId?: string | null };
  }
}

/** Routes of the HTTP kit itself, open to all: scraping and the API description. */
const KIT_PUBLIC = new Set(['/metrics', '/openapi.json']);
const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const ADMIN_ONLY: RouteAccess = { resource: 'project', verb: 'write' };

/** Reads the state a VM is in, for an audit row's `before`. */
export type DescribeForAudit = (resource: string, id: string) => Promise<unknown>;

/**
 * Authentication (API tokens), authorization (the pure policy in domain/access-policy), and the
 * audit of every mutating call: a `pending` row on entry, completed on exit with the result
 * (`success`, `failure`, or `denied` for 401/403), the status, and summaries before and after. A
 * call refused before it got that far (no token, a viewer's write) gets its row on exit too.
 */
export function registerAccessControl(app: HttpServer, access: AccessService, audit: AuditRepo, describe: DescribeForAudit): void {
  app.addHook('onRequest', async (request) => {
    const url = request.routeOptions.url;
    if (url === undefined || KIT_PUBLIC.has(url)) return; // no route: the 404 handler answers
    const rule = request.routeOptions.config.access ?? ADMIN_ONLY;
    if (rule.public) return;
    const principal = await access.authenticate(bearerOf(request));
    request.principal = principal;
    if (decide(principal, rule.resource, rule.verb) === 'deny') {
      throw new NexusError('forbidden', `a ${principal.role} token may not ${rule.verb === 'read' ? 'read' : 'change'} ${rule.resource}s`, {
        suggestion: principal.role === 'viewer' ? 'Use an operator token for changes.' : 'Ask an admin.',
      });
    }
    if (!MUTATING.has(request.method)) return;
    const resourceId = idOf(request);
    request.audit = {
      resourceId,
      id: await audit.begin({
        actor: actorOf(principal),
        action: actionOf(request, rule),
        resource: rule.resource,
        resourceId,
        requestId: request.id,
        before: resourceId ? await describe(rule.resource, resourceId).catch(() => null) : null,
      }),
    };
  });

  // What the call answered, in brief, for the row's `after` (never the body: it may hold secrets).
  app.addHook('onSend', async (request, reply, payload) => {
    if (!MUTATING.has(request.method) || typeof payload !== 'string' || !reply.getHeader('content-type')?.toString().includes('json')) return payload;
    try {
      const body = JSON.parse(payload) as Record<string, unknown>;
      request.audit ??= {};
      request.audit.after = summaryOf(body);
      if (typeof body.id === 'string' && !request.audit.resourceId) request.audit.resourceId = body.id;
    } catch {
      // not JSON after all: no summary
    }
    return payload;
  });

  app.addHook('onResponse', async (request, reply) => {
    const url = request.routeOptions.url;
    if (url === undefined || KIT_PUBLIC.has(url) || !MUTATING.has(request.method)) return;
    const rule = request.routeOptions.config.access ?? ADMIN_ONLY;
    if ('audit' in rule && rule.audit === false) return;
    await finishAudit(audit, request, reply, rule).catch((error: unknown) =>
      request.log.error({ err: messageOf(error), request_id: request.id }, 'could not complete the audit row'),
    );
  });
}

async function finishAudit(audit: AuditRepo, request: FastifyRequest, reply: FastifyReply, rule: RouteAccess): Promise<void> {
  const status = reply.statusCode;
  const result = status < 400 ? 'success' : status === 401 || status === 403 ? 'denied' : 'failure';
  const resourceId = request.audit?.resourceId ?? idOf(request);
  const outcome = { result, status, resourceId, after: request.audit?.after ?? null, detail: status >= 400 ? faultOf(request.audit?.after) : null } as const;
  const id =
    request.audit?.id ??
    (await audit.begin({
      actor: request.principal ? actorOf(request.principal) : rule.public ? (rule.resource ?? 'public') : 'anonymous',
      action: actionOf(request, rule),
      resource: rule.resource ?? 'none',
      resourceId,
      requestId: request.id,
      before: null,
    }));
  await audit.finish(id, outcome);
}

function actorOf(principal: Principal): string {
  return `token:${principal.tokenId} (${principal.owner})`;
}

function actionOf(request: FastifyRequest, rule: RouteAccess): string {
  const params = (request.params ?? {}) as Record<string, unknown>;
  const action = typeof params.action === 'string' ? params.action : '';
  return (rule.action ?? `${rule.resource ?? 'none'}.${'verb' in rule ? rule.verb : 'call'}`).replace('{action}', action);
}

function idOf(request: FastifyRequest): string | null {
  const params = (request.params ?? {}) as Record<string, unknown>;
  const id = params.id ?? params.name;
  return typeof id === 'string' ? id : null;
}

/** The few fields that say what happened, never a secret. */
function summaryOf(body: Record<string, unknown>): Record<string, unknown> {
  const keep = ['id', 'name', 'state', 'desired_state', 'ok', 'error', 'fault_message', 'role', 'project', 'revoked_at'];
  return Object.fromEntries(keep.filter((key) => body[key] !== undefined).map((key) => [key, body[key]]));
}

function faultOf(after: unknown): string | null {
  const fault = (after as { fault_message?: unknown } | undefined)?.fault_message;
  return typeof fault === 'string' ? fault : null;
}

/** The authenticated caller of a non-public route (set by the access hook before any handler runs). */
export function callerOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new NexusError('internal', `route ${request.routeOptions.url ?? request.url} ran without an authenticated caller`);
  return request.principal;
}
