import { Type } from 'typebox';
import { AGENT_API_PREFIX } from '../../contracts/agent-api.js';
import {
  AgentVm,
  CollectOrphansRequest,
  CollectOrphansResponse,
  HostSnapshot,
  InstantiateSnapshotRequest,
  Inventory,
  SnapshotParams,
  TakeSnapshotRequest,
  TakeSnapshotResponse,
  VmActionRequest,
  VmActionResponse,
  VmDriveParams,
  VmIdParams,
} from '../../contracts/agent-vm-api.js';
import { ErrorBody } from '../../contracts/errors.js';
import { MachineSpec, RateLimit } from '../../contracts/machine-spec.js';
import type { HttpServer } from '../../http/http-server.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { SocketProxyGuard } from '../app/socket-proxy-guard.js';
import type { VmUseCases } from '../app/vm-use-cases.js';
import { hostResourceFieldIn, isProxyAllowed } from '../domain/proxy-policy.js';
import { relay } from '../proxy/socket-proxy.js';
import { StrictObject, Text } from '../../contracts/schema.js';
import {
  FileTailQuery,
  LOG_STREAM_EVENTS,
  MetricsRecent,
  MetricsWindowQuery,
  windowSeconds,
  LogStreamQuery,
  LogTail,
  LogTailQuery,
} from '../../contracts/observe-api.js';
import { SseStream, lastEventOffset } from '../../http/sse.js';
import { followFile, tailLines } from '../../kit/log-file.js';
import type { FastifyReply, FastifyRequest } from 'fastify';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 502: ErrorBody, 503: ErrorBody };

export function registerVmRoutes(app: HttpServer, { vms, snapshots, hibernation, metrics, leftovers }: VmUseCases): void {
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
    {
      schema: {
        summary: 'start | pause | resume | stop | snapshot | restore | hibernate (save and end the VMM) | wake (restore it in place)',
        params: VmIdParams,
        body: VmActionRequest,
        response: { 200: VmActionResponse, ...errors, 507: ErrorBody },
      },
    },
    async (request) => {
      const { id } = request.params;
      const { action, timeout_ms: timeoutMs, snapshot_id: snapshotId } = request.body;
      switch (action) {
        case 'snapshot':
          return snapshots.snapshot(id);
        case 'restore':
          if (!snapshotId)
            throw new NexusError('validation_failed', 'restore needs snapshot_id', { suggestion: 'Use the snapshot_id a snapshot action answered.' });
          return { vm: await snapshots.restore(id, snapshotId) };
        case 'hibernate':
          return { vm: await hibernation.hibernate(id) };
        case 'wake':
          return { vm: await hibernation.wake(id) };
        default:
          return { vm: await vms.act(id, action, timeoutMs) };
      }
    },
  );

  app.post(
    `${AGENT_API_PREFIX}/vms/:id/snapshots`,
    {
      schema: {
        summary: 'Capture a running VM into a snapshot kept on the host, then resume or stop it (the same snapshot_id again answers the one taken)',
        params: VmIdParams,
        body: TakeSnapshotRequest,
        response: { 201: TakeSnapshotResponse, ...errors, 507: ErrorBody },
      },
    },
    async (request, reply) => {
      const taken = await snapshots.take(request.params.id, request.body.snapshot_id, request.body.then ?? 'resume');
      return reply.code(201).send(taken);
    },
  );

  app.post(
    `${AGENT_API_PREFIX}/snapshots/:sid/instantiate`,
    {
      schema: {
        summary: 'Make a new VM from a snapshot kept on this host, running: restored, not booted (the same vm_id again answers the VM made)',
        params: SnapshotParams,
        body: InstantiateSnapshotRequest,
        response: { 201: AgentVm, ...errors, 507: ErrorBody },
      },
    },
    async (request, reply) => reply.code(201).send(await snapshots.instantiate(request.params.sid, request.body.vm_id, request.body.spec)),
  );

  app.get(
    `${AGENT_API_PREFIX}/snapshots/:sid`,
    { schema: { summary: 'A snapshot kept on this host', params: SnapshotParams, response: { 200: HostSnapshot, ...errors } } },
    async (request) => snapshots.get(request.params.sid),
  );

  app.delete(
    `${AGENT_API_PREFIX}/snapshots/:sid`,
    {
      schema: {
        summary: 'Remove a snapshot kept on this host (one that is not here is gone already)',
        params: SnapshotParams,
        response: { 200: Type.Object({ ok: Type.Literal(true) }), ...errors },
      },
    },
    async (request) => {
      await snapshots.delete(request.params.sid);
      return { ok: true as const };
    },
  );

  app.get(
    `${AGENT_API_PREFIX}/vms/:id/logs`,
    {
      schema: { summary: "The last lines of a VM's console or VMM log", params: VmIdParams, querystring: LogTailQuery, response: { 200: LogTail, ...errors } },
    },
    async (request) => {
      const source = request.query.source ?? 'console';
      const { path } = await vms.logFile(request.params.id, source);
      const { lines, size } = await tailLines(path, request.query.tail ?? 200);
      return { source, lines: lines.map((line) => line.text), next_offset: lines.at(-1)?.end ?? size };
    },
  );

  app.get(
    `${AGENT_API_PREFIX}/vms/:id/logs/stream`,
    {
      schema: {
        summary: "A VM's console or VMM log as Server-Sent Events, following the file (Last-Event-ID resumes)",
        params: VmIdParams,
        querystring: LogStreamQuery,
        response: { 200: { description: 'text/event-stream', type: 'string' }, ...errors },
      },
    },
    async (request, reply) => {
      const source = request.query.source ?? 'console';
      const { path, vmDir } = await vms.logFile(request.params.id, source);
      await streamLog(request, reply, path, vmDir, request.query.tail ?? 0);
    },
  );

  app.get(
    `${AGENT_API_PREFIX}/vms/:id/metrics/recent`,
    {
      schema: {
        summary: "The VM's metrics records of the last window (normalized, with the VMM's raw record)",
        params: VmIdParams,
        querystring: MetricsWindowQuery,
        response: { 200: MetricsRecent, ...errors },
      },
    },
    async (request) => ({ items: await metrics.recent(request.params.id, windowOf(request.query.window)) }),
  );

  app.get(
    `${AGENT_API_PREFIX}/logs/tail`,
    {
      schema: {
        summary: 'The last lines of a file under the VM folders, by path (for the manager in dev mode); any other path is a 403',
        querystring: FileTailQuery,
        response: { 200: LogTail, ...errors },
      },
    },
    async (request) => {
      const path = await vms.vmFolderFile(request.query.path);
      const { lines, size } = await tailLines(path, request.query.tail ?? 200);
      return { source: 'file' as const, lines: lines.map((line) => line.text), next_offset: lines.at(-1)?.end ?? size };
    },
  );

  app.patch(
    `${AGENT_API_PREFIX}/vms/:id/drives/:drive_id`,
    { schema: { summary: "Change a drive's rate limit (at once if running)", params: VmDriveParams, body: RateLimit, response: { 200: AgentVm, ...errors } } },
    async (request) => vms.updateDriveRateLimit(request.params.id, request.params.drive_id, request.body),
  );

  app.post(
    `${AGENT_API_PREFIX}/vms/:id/tap`,
    {
      schema: {
        summary: "Make the VM's TAP, attached to the bridge (idempotent)",
        params: VmIdParams,
        response: { 200: Type.Object({ tap: Type.String() }), ...errors },
      },
    },
    async (request) => vms.ensureTap(request.params.id),
  );

  app.post(
    `${AGENT_API_PREFIX}/vms/:id/spawn`,
    { schema: { summary: 'Start the VMM process with the guest not yet running; resume boots it', params: VmIdParams, response: { 200: AgentVm, ...errors } } },
    async (request) => vms.spawn(request.params.id),
  );

  app.delete(
    `${AGENT_API_PREFIX}/vms/:id`,
    {
      schema: {
        summary: 'Stop the VM and remove its TAP, sockets and folder',
        params: VmIdParams,
        response: { 200: Type.Object({ ok: Type.Literal(true) }), ...errors },
      },
    },
    async (request) => {
      await vms.delete(request.params.id);
      return { ok: true as const };
    },
  );

  app.post(
    `${AGENT_API_PREFIX}/gc`,
    {
      schema: {
        summary: 'Remove the named leftovers that are still orphans (processes, TAPs, sockets, folders)',
        body: CollectOrphansRequest,
        response: { 200: CollectOrphansResponse, ...errors },
      },
    },
    async (request) => ({ removed: await leftovers.collectOrphans(request.body) }),
  );

  app.get(
    `${AGENT_API_PREFIX}/inventory`,
    { schema: { summary: 'Every VM folder on this host, and leftovers that belong to none', response: { 200: Inventory, 401: ErrorBody } } },
    async () => leftovers.inventory(),
  );
}

/** The query of a proxied request: which socket (default the VM's own). Firecracker's own endpoints take no query. */
const ProxyQuery = StrictObject({ sock: Type.Optional(Text(4096, { minLength: 1, description: 'The VM API socket path' })) });
const RELAYED_METHODS = ['GET', 'PUT', 'PATCH'] as const;

/**
 * `ANY /agent/v1/vms/:id/proxy/<firecracker path>?sock=`: relays an allow-listed call to the VM's
 * Firecracker socket and answers Firecracker's status and body as they are (not the error
 * contract: a Firecracker 400 stays Firecracker's). Refusals by the agent are in the contract.
 */
export function registerProxyRoute(app: HttpServer, guard: SocketProxyGuard, timeoutMs: number): void {
  app.route({
    method: ['GET', 'PUT', 'PATCH', 'POST', 'DELETE'],
    url: `${AGENT_API_PREFIX}/vms/:id/proxy/*`,
    schema: {
      summary: "Relay an allow-listed call to the VM's Firecracker API socket",
      params: StrictObject({ id: VmIdParams.properties.id, '*': Text(4096, { description: 'The Firecracker API path' }) }),
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
      const answer = await guard.proxy(request.params.id, request.query.sock, (socket) =>
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

/**
 * Streams a log file as SSE: the last `tail` lines first (or, resuming, from the Last-Event-ID
 * offset), then every line as it is written, until the client leaves or the VM's folder is gone,
 * which ends the stream with a final `end` event.
 */
async function streamLog(request: FastifyRequest, reply: FastifyReply, path: string, vmDir: string, tail: number): Promise<void> {
  const resumeAt = lastEventOffset(request);
  // Where it starts is read before the answer's head goes out: a client that has the head (and
  // then makes the guest print) must get every line written after it, none lost to a late read.
  const backlog = resumeAt === undefined ? await tailLines(path, tail) : undefined;
  const offset = resumeAt ?? backlog?.lines.at(-1)?.end ?? backlog?.size ?? 0;
  const stream = new SseStream(request, reply);
  try {
    for (const line of backlog?.lines ?? []) stream.send({ id: line.end, data: line.text });
    for await (const change of followFile(path, offset, { signal: stream.closed, endsWithout: vmDir })) {
      if (change.kind === 'lines') for (const line of change.lines) stream.send({ id: line.end, data: line.text });
      else if (change.kind === 'rotated') stream.send({ event: LOG_STREAM_EVENTS.rotated, id: 0, data: JSON.stringify({ reason: 'rotated' }) });
      else stream.send({ event: LOG_STREAM_EVENTS.end, data: JSON.stringify({ reason: 'vm_deleted' }) });
    }
  } catch (error) {
    request.log.warn({ err: error, path }, 'log stream failed');
  } finally {
    stream.end();
  }
}

/** Seconds in a `window` query value; past an hour is a 400. */
function windowOf(window: string | undefined): number {
  const seconds = windowSeconds(window ?? '60s');
  if (seconds === undefined) throw new NexusError('validation_failed', `window must be 1 s to 1 hour, like 60s or 5m (got ${window})`);
  return seconds;
}
