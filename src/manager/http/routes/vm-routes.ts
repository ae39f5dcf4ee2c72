import { Type } from 'typebox';
import { ErrorBody } from '../../../contracts/errors.js';
import { StrictObject, Text, Uuid } from '../../../contracts/schema.js';
import {
  BulkActionRequest,
  BulkActionResponse,
  CreateVmRequest,
  OkResponse,
  SettleWaitQuery,
  StateWaitQuery,
  Vm,
  VmActionParams,
  VmEventList,
  VmList,
  VmListQuery,
} from '../../../contracts/vm-api.js';
import { whileAccessHolds } from '../../../http/access-watch.js';
import type { HttpServer } from '../../../http/http-server.js';
import { NexusError } from '../../../kit/nexus-error.js';
import type { ManagerServices } from '../manager-services.js';
import { callerOf } from '../access-control.js';

// 401 and 503 too: a wait ends so when the caller's token lapses, or cannot be checked, while it waits.
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 408: ErrorBody, 409: ErrorBody, 412: ErrorBody, 503: ErrorBody };

/**
 * `If-Match` as the routes that honour it declare it: a resource version this API gave out. Past
 * 15 digits it never was one, and would not fit the `bigint` column (nor a JSON number) anyway.
 */
const IfMatchHeaders = Type.Object({
  'if-match': Type.Optional(
    Text(40, {
      pattern: '^\\s*(W/)?"?[0-9]{1,15}"?\\s*$',
      example: '"3"',
      description: 'The ETag of GET /v1/vms/{id}: refused with 412 when the VM changed since',
    }),
  ),
});

/** The resource version in an `If-Match` header (`"7"` or `7`); undefined when absent. */
function ifMatchOf(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*(?:W\/)?"?(\d+)"?\s*$/.exec(header);
  if (!match) throw new NexusError('validation_failed', `If-Match must be an ETag this API gave out, like "3" (got ${header})`);
  return Number(match[1]);
}
const IdParams = StrictObject({ id: Uuid });
/** DELETE's query: the settle wait, and whether the VM's snapshots outlive it. */
const DeleteVmQuery = StrictObject({
  ...SettleWaitQuery.properties,
  keep_snapshots: Type.Optional(Type.Boolean({ default: false, description: "true: the VM's snapshots outlive it; otherwise they are deleted with it" })),
});

export function registerVmRoutes(app: HttpServer, services: ManagerServices): void {
  const { vms } = services;

  app.post(
    '/v1/vms',
    {
      config: { access: { resource: 'vm', verb: 'write', action: 'vm.create' } },
      schema: {
        summary: 'Create a VM (it starts unless desired_state is stopped)',
        tags: ['vms'],
        querystring: SettleWaitQuery,
        body: CreateVmRequest,
        // 422: an address asked for that its network cannot give (outside it, its gateway).
        response: { 201: Vm, ...errors, 422: ErrorBody },
      },
    },
    async (request, reply) => {
      const vm = await vms.create(request.body, callerOf(request));
      const wait = request.query.wait;
      if (wait) {
        await whileAccessHolds(request, (lapsed) => vms.waitFor(vm.id, 'create', wait * 1000, lapsed));
        return reply.status(201).send(await vms.get(vm.id, callerOf(request)));
      }
      return reply.status(201).send(vm);
    },
  );

  app.get(
    '/v1/vms',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: { summary: 'List VMs (filters, cursor pagination by name)', tags: ['vms'], querystring: VmListQuery, response: { 200: VmList, ...errors } },
    },
    async (request) => vms.list(request.query, callerOf(request)),
  );

  app.get(
    '/v1/vms/:id',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: { summary: 'One VM: desired and observed state, host, paths, last error', tags: ['vms'], params: IdParams, response: { 200: Vm, ...errors } },
    },
    async (request, reply) => {
      const vm = await vms.get(request.params.id, callerOf(request));
      reply.header('etag', `"${vm.resource_version}"`);
      return vm;
    },
  );

  app.post(
    '/v1/vms/actions',
    {
      config: { access: { resource: 'vm', verb: 'write', action: 'vm.bulk' } },
      schema: { summary: 'One action on many VMs, answered per VM', tags: ['vms'], body: BulkActionRequest, response: { 200: BulkActionResponse, ...errors } },
    },
    async (request) => ({ results: await vms.bulk(request.body.ids, request.body.action, callerOf(request)) }),
  );

  app.get(
    '/v1/vms/:id/wait',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: {
        summary: 'Blocks until the VM reaches a state (408 with the current state on timeout)',
        tags: ['vms'],
        params: IdParams,
        querystring: StateWaitQuery,
        response: { 200: Vm, ...errors },
      },
    },
    async (request) =>
      whileAccessHolds(request, (lapsed) =>
        vms.waitForState(request.params.id, request.query.state, (request.query.timeout ?? 30) * 1000, callerOf(request), lapsed),
      ),
  );

  app.get(
    '/v1/vms/:id/events',
    {
      config: { access: { resource: 'vm', verb: 'read' } },
      schema: { summary: "The VM's history: state changes and errors", tags: ['vms'], params: IdParams, response: { 200: VmEventList, ...errors } },
    },
    async (request) => ({ items: await vms.events(request.params.id, callerOf(request)) }),
  );

  app.post(
    '/v1/vms/:id/:action',
    {
      config: { access: { resource: 'vm', verb: 'write', action: 'vm.{action}' } },
      schema: {
        summary: 'start | stop | pause | resume: records the desired state; ?wait= waits for it',
        tags: ['vms'],
        params: VmActionParams,
        querystring: SettleWaitQuery,
        headers: IfMatchHeaders,
        response: { 200: OkResponse, ...errors },
      },
    },
    async (request) => {
      const { id, action } = request.params;
      await vms.act(id, action, callerOf(request), ifMatchOf(request.headers['if-match']));
      const wait = request.query.wait;
      if (wait) await whileAccessHolds(request, (lapsed) => vms.waitFor(id, action, wait * 1000, lapsed));
      return { ok: true as const };
    },
  );

  app.delete(
    '/v1/vms/:id',
    {
      config: { access: { resource: 'vm', verb: 'write', action: 'vm.delete' } },
      schema: {
        summary: 'Delete a VM: stops it, then removes it and its host resources (and its snapshots, unless ?keep_snapshots=true)',
        tags: ['vms'],
        params: IdParams,
        querystring: DeleteVmQuery,
        headers: IfMatchHeaders,
        response: { 200: OkResponse, ...errors },
      },
    },
    async (request) => {
      const { id } = request.params;
      await vms.delete(id, callerOf(request), { ifMatch: ifMatchOf(request.headers['if-match']), keepSnapshots: request.query.keep_snapshots });
      const wait = request.query.wait;
      if (wait) await whileAccessHolds(request, (lapsed) => vms.waitFor(id, 'delete', wait * 1000, lapsed));
      return { ok: true as const };
    },
  );
}
