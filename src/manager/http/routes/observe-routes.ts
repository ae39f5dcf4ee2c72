import { ErrorBody } from '../../../contracts/errors.js';
import { LogPathTailQuery, LogStreamQuery, LogTail, LogTailQuery, MetricsRecent, MetricsWindowQuery } from '../../../contracts/observe-api.js';
import { StrictObject, UUID_PATTERN, Uuid } from '../../../contracts/schema.js';
import { EventsQuery, FleetEventList } from '../../../contracts/vm-api.js';
import { SseStream } from '../../../http/sse.js';
import { sleepUnlessAborted } from '../../../kit/sleep.js';
import { NexusError } from '../../../kit/nexus-error.js';
import { instantOf } from '../../../kit/timestamp.js';
import type { HttpServer } from '../../../http/http-server.js';
import { callerOf } from '../access-control.js';
import type { ManagerServices } from '../manager-services.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody };
const IdParams = StrictObject({ id: Uuid });
/** How often an event stream looks for new events. */
const EVENT_POLL_MS = 500;

/**
 * `<created_at>|<event id>`, as an event stream gives out ids; undefined when absent or not one.
 * The id must be a UUID's spelling, not only its length: the database refuses anything else.
 */
function eventCursorOf(header: string | string[] | undefined): { at: Date; id: string } | undefined {
  const text = Array.isArray(header) ? header[0] : header;
  const [atText, id, ...rest] = text?.split('|') ?? [];
  if (rest.length > 0 || !id || !UUID_PATTERN.test(id) || !/^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(atText ?? '')) return undefined;
  // Read as the database will: `new Date` takes year 0000, which the query would then fail on.
  const at = instantOf(atText ?? '');
  return at && { at, id };
}

/** Reading what a VM does: its logs, relayed from its agent. */
export function registerObserveRoutes(app: HttpServer, services: ManagerServices, devRoutes: boolean): void {
  const { observer, vms } = services;

  app.get(
    '/v1/events',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: 'Events of every VM the caller may read: state changes and VMM errors, oldest first',
        tags: ['observability'],
        querystring: EventsQuery,
        response: { 200: FleetEventList, ...errors },
      },
    },
    async (request) => ({ items: await vms.fleetEvents(request.query, callerOf(request)) }),
  );

  app.get(
    '/v1/vms/:id/events/stream',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: "The VM's events as Server-Sent Events: its history first, then each new one (Last-Event-ID resumes)",
        description:
          'Each event is `event: vm_event` with the VmEvent as JSON. An `end` event is the last: data {"reason":"vm_deleted"} when the VM is deleted, ' +
          'or, within about a second, the reason the caller may no longer read it (`token_revoked`, `token_expired`, `token_rotated`, `forbidden`, `access_unverified`).',
        tags: ['observability'],
        params: IdParams,
        response: { 200: { description: 'text/event-stream', type: 'string' }, ...errors },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      let after = eventCursorOf(request.headers['last-event-id']);
      // The first read answers 404 in the error contract for a VM the caller cannot see.
      let batch = await vms.eventsSince(request.params.id, caller, after);
      if (!batch) throw new NexusError('not_found', `no VM ${request.params.id}`, { suggestion: 'GET /v1/vms lists the VMs.' });
      const stream = new SseStream(request, reply);
      try {
        while (batch && !stream.closed.aborted) {
          for (const event of batch) {
            stream.send({ event: 'vm_event', id: `${event.created_at}|${event.id}`, data: JSON.stringify(event) });
            after = { at: new Date(event.created_at), id: event.id };
          }
          await sleepUnlessAborted(EVENT_POLL_MS, stream.closed);
          if (stream.closed.aborted) break;
          batch = await vms.eventsSince(request.params.id, caller, after);
        }
        if (!batch) stream.send({ event: 'end', data: JSON.stringify({ reason: 'vm_deleted' }) });
      } catch (error) {
        request.log.warn({ err: error }, 'event stream failed');
      } finally {
        stream.end();
      }
    },
  );

  if (devRoutes) {
    // Admins only (no access declared): a path can name any VM's log, whatever its project.
    app.get(
      '/v1/logs/tail',
      {
        schema: {
          summary: 'Dev mode only: the last lines of a log by its path on the host, which must lie under the VM folders (else 403)',
          tags: ['observability'],
          querystring: LogPathTailQuery,
          response: { 200: LogTail, ...errors },
        },
      },
      async (request) => observer.tailFile(request.query),
    );
  }

  app.get(
    '/v1/vms/:id/logs',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: "The last lines of the VM's console (source=console) or its VMM's own log (source=vmm)",
        tags: ['observability'],
        params: IdParams,
        querystring: LogTailQuery,
        response: { 200: LogTail, ...errors },
      },
    },
    async (request) => observer.logs(request.params.id, callerOf(request), request.query),
  );

  app.get(
    '/v1/vms/:id/metrics/recent',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: "The VM's metrics of the last window (default 60s): CPU time, memory, block and network totals, and the VMM's raw record",
        tags: ['observability'],
        params: IdParams,
        querystring: MetricsWindowQuery,
        response: { 200: MetricsRecent, ...errors },
      },
    },
    async (request) => observer.metrics(request.params.id, callerOf(request), request.query),
  );

  app.get(
    '/v1/metrics/recent',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: 'The same as GET /v1/vms/{id}/metrics/recent, with the VM id in the query',
        tags: ['observability'],
        querystring: StrictObject({ id: Uuid, window: MetricsWindowQuery.properties.window }),
        response: { 200: MetricsRecent, ...errors },
      },
    },
    async (request) => observer.metrics(request.query.id, callerOf(request), { window: request.query.window }),
  );

  app.get(
    '/v1/vms/:id/logs/stream',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: "The VM's log as Server-Sent Events, following it as it is written",
        description:
          'Each line is an event whose id is the byte offset after it: reconnect with Last-Event-ID to resume. ' +
          '`tail=N` sends the last N lines first. A `rotated` event says the file was cut back; an `end` event ' +
          'is the last: data {"reason":"vm_deleted"} when the VM is deleted, or, within about a second, the reason the caller may no longer ' +
          'read it (`token_revoked`, `token_expired`, `token_rotated`, `forbidden`, `access_unverified`). Comments keep an idle stream open.',
        tags: ['observability'],
        params: IdParams,
        querystring: LogStreamQuery,
        response: { 200: { description: 'text/event-stream', type: 'string' }, ...errors },
      },
    },
    async (request, reply) => {
      const abort = new AbortController();
      const lastEventId = request.headers['last-event-id'];
      // Errors up to here (no VM, no host, agent down) are answered in the error contract.
      const upstream = await observer.streamLogs(
        request.params.id,
        callerOf(request),
        request.query,
        typeof lastEventId === 'string' ? lastEventId : undefined,
        abort.signal,
      );
      const stream = new SseStream(request, reply);
      stream.closed.addEventListener('abort', () => {
        abort.abort();
        upstream.destroy();
      });
      try {
        await stream.relay(upstream);
      } catch (error) {
        // A client that left, or a stream ended by its guard, stops the upstream mid-read: not a failure.
        if (!stream.closed.aborted) request.log.warn({ err: error }, 'log stream relay failed');
      } finally {
        stream.end();
      }
    },
  );
}
