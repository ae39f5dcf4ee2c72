import { Type } from 'typebox';
import { AGENT_API_PREFIX } from '../../contracts/agent-api.js';
import { AgentVm, CollectOrphansRequest, CollectOrphansResponse, Inventory, VmActionRequest, VmActionResponse, VmDriveParams, VmIdParams } from '../../contracts/agent-vm-api.js';
import { ErrorBody } from '../../contracts/errors.js';
import { MachineSpec, RateLimit } from '../../contracts/machine-spec.js';
import type { HttpServer } from '../../kit/http/http-server.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { VmService } from '../app/vm-service.js';
import { hostResourceFieldIn, isProxyAllowed } from '../domain/proxy-policy.js';
import { relay } from '../proxy/socket-proxy.js';
import { StrictObject } from '../../contracts/schema.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 502: ErrorBody, 503: ErrorBody };

export function registerVmRoutes(app: HttpServer, vms: VmService): void {
  app.put(
    `${AGENT_API_PREFIX}/vms/:id`,
    { schema: { summary: 'Ensure a VM from a MachineSpec (idempotent)', params: VmIdParams, body: MachineSpec, response: { 200: AgentVm, ...errors } } },
    async (request) => vms.ensure(request.params.id, request.body),
  );

  app.get(
    `${AGENT_API_PREFIX}/vms/:id`,
    { schema: { summary: 'A VM as the agent sees it', params: VmIdParams, response: { 200: AgentVm, ...errors } } },
    async (request) => vms.get(request.params.id),
  );

  app.post(
    `${AGENT_API_PREFIX}/vms/:id/actions`,
    { schema: { summary: 'start | pause | resume | stop | snapshot | restore', params: VmIdParams, body: VmActionRequest, response: { 200: VmActionResponse, ...errors } } },
    async (request) => {
      const { id } = request.params;
      const { action, timeout_ms: timeoutMs, snapshot_id: snapshotId } = request.body;
      switch (action) {
        case 'snapshot':
          return vms.snapshot(id);
        case 'restore':
          if (!snapshotId) throw new NexusError('validation_failed', 'restore needs snapshot_id', { suggestion: 'Use the snapshot_id a snapshot action answered.' });
          return { vm: await vms.restore(id, snapshotId) };
        default:
          return { vm: await vms.act(id, action, timeoutMs) };
      }
    },
  );

  app.patch(
    `${AGENT_API_PREFIX}/vms/:id/drives/:drive_id`,
    { schema: { summary: "Change a drive's rate limit (at once if running)", params: VmDriveParams, body: RateLimit, response: { 200: AgentVm, ...errors } } },
    async (request) => vms.updateDriveRateLimit(request.params.id, request.params.drive_id, request.body),
  );

  app.post(
    `${AGENT_API_PREFIX}/vms/:id/tap`,
    { schema: { summary: "Make the VM's TAP, attached to the bridge (idempotent)", params: VmIdParams, response: { 200: Type.Object({ tap: Type.String() }), ...errors } } },
    async (request) => vms.ensureTap(request.params.id),
  );

  app.post(
    `${AGENT_API_PREFIX}/vms/:id/spawn`,
    { schema: { summary: 'Start the VMM process with the guest not yet running; resume boots it', params: VmIdParams, response: { 200: AgentVm, ...errors } } },
    async (request) => vms.spawn(request.params.id),
  );

  app.delete(
    `${AGENT_API_PREFIX}/vms/:id`,
    { schema: { summary: 'Stop the VM and remove its TAP, sockets and folder', params: VmIdParams, response: { 200: Type.Object({ ok: Type.Literal(true) }), ...errors } } },
    async (request) => {
      await vms.delete(request.params.id);
      return { ok: true as const };
    },
  );

  app.post(
    `${AGENT_API_PREFIX}/gc`,
    { schema: { summary: 'Remove the named leftovers that are still orphans (processes, TAPs, sockets, folders)', body: CollectOrphansRequest, response: { 200: CollectOrphansResponse, ...errors } } },
    async (request) => ({ removed: await vms.collectOrphans(request.body) }),
  );

  app.get(
    `${AGENT_API_PREFIX}/inventory`,
    { schema: { summary: 'Every VM folder on this host, and leftovers that belong to none', response: { 200: Inventory, 401: ErrorBody } } },
    async () => vms.inventory(),
  );
}

/** The query of a proxied request: which socket (default the VM's own). Firecracker's own endpoints take no query. */
const ProxyQuery = StrictObject({ sock: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'The VM API socket path' })) });
const RELAYED_METHODS = ['GET', 'PUT', 'PATCH'] as const;

/**
 * `ANY /agent/v1/vms/:id/proxy/<firecracker path>?sock=`: relays an allow-listed call to the VM's
 * Firecracker socket and answers Firecracker's status and body as they are (not the error
 * contract: a Firecracker 400 stays Firecracker's). Refusals by the agent are in the contract.
 */
export function registerProxyRoute(app: HttpServer, vms: VmService, timeoutMs: number): void {
  app.route({
    method: ['GET', 'PUT', 'PATCH', 'POST', 'DELETE'],
    url: `${AGENT_API_PREFIX}/vms/:id/proxy/*`,
    schema: {
      summary: "Relay an allow-listed call to the VM's Firecracker API socket",
      params: StrictObject({ id: VmIdParams.properties.id, '*': Type.String() }),
      querystring: ProxyQuery,
    },
    handler: async (request, reply) => {
      // The raw path (still percent-encoded) after `/proxy`: the route matched, so the prefix up to
      // it is the one registered, and its length is that of the route's static part plus the id.
      const rawPath = (request.raw.url ?? '').split('?')[0] ?? '';
      const prefix = `${AGENT_API_PREFIX}/vms/`;
      const afterId = rawPath.indexOf('/proxy', prefix.length);
      const path = afterId === -1 ? '' : rawPath.slice(afterId + '/proxy'.length) || '/';
      const method = request.method;
      if (!RELAYED_METHODS.includes(method as (typeof RELAYED_METHODS)[number]) || !isProxyAllowed(method, path)) {
        throw new NexusError('forbidden', `${method} ${path} is not an endpoint the proxy relays`, {
          suggestion: 'Relayed: read-only GETs, and machine-config, boot-source, drives, network-interfaces, logger, metrics, actions, vm and snapshot.',
        });
      }
      const field = hostResourceFieldIn(request.body);
      if (field) {
        throw new NexusError('forbidden', `\`${field}\` names a host file or device: the proxy does not relay it`, {
          suggestion: 'The agent sets host paths itself: use its VM API (ensure, actions, drives) for those changes.',
        });
      }
      const answer = await vms.proxy(request.params.id, request.query.sock, (socket) =>
        relay({
          socket,
          method: method as (typeof RELAYED_METHODS)[number],
          path,
          headers: request.headers,
          body: request.body === undefined ? undefined : JSON.stringify(request.body),
          timeoutMs,
        }),
      );
      reply.status(answer.status).headers(answer.headers);
      return reply.send(answer.body.length > 0 ? answer.body : undefined);
    },
  });
}
