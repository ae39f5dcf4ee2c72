import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpServer } from '../../http/http-server.js';
import { bearerOf } from '../../http/bearer.js';
import { NexusError, messageOf } from '../../kit/nexus-error.js';
import { type AccessService, TokenRefused } from '../app/access-service.js';
import { type Principal, type ResourceKind, type Verb, decide } from '../domain/access-policy.js';
import type { AuditRepo } from '../ports/access-repos.js';
import type { Refusal, RefusalAudit } from '../app/refusal-audit.js';

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
    /**
     * What the audit row says beyond the defaults. `actor` and `action` apply to a public route's
     * row, which is written on exit: its handler may know by then who called (enrollment: the join
     * token) and what the call turned out to be (a new host, or one replaced).
     */
    audit?: { id?: string; after?: unknown; resourceId?: string | null; actor?: string; action?: string };
  }
}

/** Routes of the HTTP kit itself, open to all: scraping and the API description. */
const KIT_PUBLIC = new Set(['/metrics', '/openapi.json']);
const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const ADMIN_ONLY: RouteAccess = { resource: 'project', verb: 'write' };

/** Reads the state a VM is in, for an audit row's `before`. */
export type DescribeForAudit = (resource: string, id: string) => Promise<unknown>;

/** The rule of the route a request is for; undefined for the kit's own routes and for no route (the 404 handler answers). */
function ruleOf(request: FastifyRequest): RouteAccess | undefined {
  const url = request.routeOptions.url;
  if (url === undefined || KIT_PUBLIC.has(url)) return undefined;
  return request.routeOptions.config.access ?? ADMIN_ONLY;
}

/**
 * Authentication (API tokens): the first of the access hooks, so that the per-token rate limit can
 * run right after it, before authorization and the audit row cost a database write. Sets the
 * caller, and the guard that long-lived answers ask whether it may still be served.
 */
export function registerAuthentication(app: HttpServer, access: AccessService): void {
  app.addHook('onRequest', async (request) => {
    const rule = ruleOf(request);
    if (!rule || rule.public) return;
    const bearer = bearerOf(request);
    request.principal = await access.authenticate(bearer);
    request.accessGuard = () => lapseOf(access, bearer, rule);
  });
}

/**
 * Authorization (the pure policy in domain/access-policy) and the audit of every mutating call: a
 * `pending` row on entry, completed on exit with the result (`success`, `failure`, or `denied` for
 * 401/403), the status, and summaries before and after. A call refused before it got that far (a
 * viewer's write) gets its row on exit. Refusals a caller nobody knows can repeat at will (no
 * token or a wrong one, a public route refused, a token past its rate limit) are handed to
 * `refusals`, which writes the first of each source and counts the rest: a flood of them costs
 * no database write each. Register after authentication and the per-token rate limit.
 */
export function registerAuthorization(app: HttpServer, audit: AuditRepo, refusals: Pick<RefusalAudit, 'note'>, describe: DescribeForAudit): void {
  app.addHook('onRequest', async (request) => {
    const rule = ruleOf(request);
    if (!rule || rule.public) return;
    const principal = callerOf(request);
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
        remoteAddress: request.ip,
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
    const rule = ruleOf(request);
    if (!rule || !MUTATING.has(request.method)) return;
    // Turned away by a rate limit before the caller was known (by address, or by token id for
    // wrong secrets): not even counted, or a flood would fill the refusal counts' sources.
    if (reply.statusCode === 429 && !request.principal) return;
    if ('audit' in rule && rule.audit === false) return;
    if (repeatableRefusal(request, reply.statusCode, rule)) {
      refusals.note(refusalOf(request, reply, rule));
      return;
    }
    await finishAudit(audit, request, reply, rule).catch((error: unknown) =>
      request.log.error({ err: messageOf(error), request_id: request.id }, 'could not complete the audit row'),
    );
  });
}

/**
 * A refusal the caller can repeat as fast as it is answered, before any row of its own was begun:
 * a public route's client error (an enrollment with a wrong join token, or a ready host's name),
 * a 401 (no caller known), a token past its rate limit.
 */
function repeatableRefusal(request: FastifyRequest, status: number, rule: RouteAccess): boolean {
  if (request.audit?.id !== undefined) return false;
  return (rule.public === true && status >= 400 && status < 500) || status === 401 || status === 429;
}

function refusalOf(request: FastifyRequest, reply: FastifyReply, rule: RouteAccess): Refusal {
  const status = reply.statusCode;
  return {
    actor: request.principal ? actorOf(request.principal) : (request.audit?.actor ?? 'anonymous'),
    action: request.audit?.action ?? actionOf(request, rule),
    resource: rule.resource ?? 'none',
    resourceId: request.audit?.resourceId ?? idOf(request),
    remoteAddress: request.ip,
    requestId: request.id,
    status,
    result: status === 401 || status === 403 ? 'denied' : 'failure',
    reason: faultOf(request.audit?.after) ?? `answered ${status}`,
  };
}

function resultOf(status: number): 'success' | 'failure' | 'denied' {
  return status < 400 ? 'success' : status === 401 || status === 403 ? 'denied' : 'failure';
}

async function finishAudit(audit: AuditRepo, request: FastifyRequest, reply: FastifyReply, rule: RouteAccess): Promise<void> {
  const status = reply.statusCode;
  const result = resultOf(status);
  const resourceId = request.audit?.resourceId ?? idOf(request);
  const outcome = { result, status, resourceId, after: request.audit?.after ?? null, detail: status >= 400 ? faultOf(request.audit?.after) : null } as const;
  const id =
    request.audit?.id ??
    (await audit.begin({
      actor: request.principal ? actorOf(request.principal) : (request.audit?.actor ?? 'anonymous'),
      action: request.audit?.action ?? actionOf(request, rule),
      resource: rule.resource ?? 'none',
      resourceId,
      requestId: request.id,
      before: null,
      remoteAddress: request.ip,
    }));
  await audit.finish(id, outcome);
}

/**
 * Why a caller let in earlier may no longer be served (its token revoked, expired, rotated away,
 * or no longer allowed this route), or undefined while it may: asked about every second while
 * the caller's long-lived answers run (see AccessWatch). Authenticating again reads the token's
 * row at least every cacheMs, so a revocation made through another manager is seen as well. Only
 * a refusal of the token is an answer; anything else (the database away, a rate limit) is thrown,
 * meaning "could not tell", and the watch asks again.
 */
async function lapseOf(access: AccessService, bearer: string | undefined, rule: { resource: ResourceKind; verb: Verb }): Promise<string | undefined> {
  try {
    return decide(await access.authenticate(bearer), rule.resource, rule.verb) === 'deny' ? 'forbidden' : undefined;
  } catch (error) {
    if (error instanceof TokenRefused) return error.reason;
    throw error;
  }
}

function actorOf(principal: Principal): string {
  return `token:${principal.tokenId} (${principal.owner})`;
}

function actionOf(request: FastifyRequest, rule: RouteAccess): string {
  const params = checkedParamsOf(request);
  const action = typeof params.action === 'string' ? params.action : '';
  return (rule.action ?? `${rule.resource ?? 'none'}.${'verb' in rule ? rule.verb : 'call'}`).replace('{action}', action);
}

function idOf(request: FastifyRequest): string | null {
  const params = checkedParamsOf(request);
  const id = params.id ?? params.name;
  return typeof id === 'string' ? id : null;
}

/**
 * The path parameters, once the route's own schema accepts them; else none. The audit reads them
 * before Fastify validates the request, and a raw `:id` may hold anything (a NUL the database
 * refuses, a megabyte): it must not reach an audit row unchecked.
 */
function checkedParamsOf(request: FastifyRequest): Record<string, unknown> {
  const params = (request.params ?? {}) as Record<string, unknown>;
  if (Object.keys(params).length === 0) return params;
  try {
    return request.validateInput(params, 'params') ? params : {};
  } catch {
    return {}; // a route that declares no params schema: nothing in them is known to be safe
  }
}

/** The few fields that say what happened, never a secret. */
function summaryOf(body: Record<string, unknown>): Record<string, unknown> {
  const keep = ['id', 'name', 'vm_id', 'state', 'desired_state', 'ok', 'error', 'fault_message', 'role', 'project', 'revoked_at'];
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
