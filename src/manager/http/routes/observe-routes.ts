import { ErrorBody } from '../../../contracts/errors.js';
import { LogPathTailQuery, LogStreamQuery, LogTail, LogTailQuery } from '../../../contracts/observe-api.js';
import { StrictObject, Uuid } from '../../../contracts/schema.js';
import type { HttpServer } from '../../../kit/http/http-server.js';
import { callerOf } from '../access-control.js';
import type { ManagerServices } from '../manager-server.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody };
const IdParams = StrictObject({ id: Uuid });

/** Reading what a VM does: its logs, relayed from its agent. */
export function registerObserveRoutes(app: HttpServer, services: ManagerServices, devRoutes: boolean): void {
  const { observer } = services;

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
    '/v1/vms/:id/logs/stream',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: "The VM's log as Server-Sent Events, following it as it is written",
        description:
          'Each line is an event whose id is the byte offset after it: reconnect with Last-Event-ID to resume. ' +
          '`tail=N` sends the last N lines first. A `rotated` event says the file was cut back; an `end` event ' +
          '(data {"reason":"vm_deleted"}) is the last, when the VM is deleted. Comments keep an idle stream open.',
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
      reply.hijack();
      reply.raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': request.id,
      });
      reply.raw.flushHeaders();
      const stop = () => {
        abort.abort();
        upstream.destroy();
      };
      reply.raw.on('close', stop);
      upstream.on('error', () => reply.raw.end());
      upstream.on('end', () => reply.raw.end());
      upstream.pipe(reply.raw, { end: false });
    },
  );
}
