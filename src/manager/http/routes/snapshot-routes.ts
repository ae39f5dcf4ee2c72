import { ErrorBody } from '../../../contracts/errors.js';
import { StrictObject, Uuid } from '../../../contracts/schema.js';
import {
  CreateSnapshotRequest,
  InstantiateSnapshotRequest,
  Snapshot,
  SnapshotIdParams,
  SnapshotList,
  SnapshotListQuery,
} from '../../../contracts/snapshot-api.js';
import { OkResponse, SettleWaitQuery, Vm } from '../../../contracts/vm-api.js';
import { whileAccessHolds } from '../../../http/access-watch.js';
import type { HttpServer } from '../../../http/http-server.js';
import type { ManagerServices } from '../manager-services.js';
import { callerOf } from '../access-control.js';

// 502 and 507 too: a host that failed the capture, and one whose disk filled up.
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 502: ErrorBody, 503: ErrorBody, 507: ErrorBody };
const VmIdParams = StrictObject({ id: Uuid });

export function registerSnapshotRoutes(app: HttpServer, services: ManagerServices): void {
  const { snapshots, vms } = services;

  app.post(
    '/v1/vms/:id/snapshots',
    {
      config: { access: { resource: 'snapshot', verb: 'write', action: 'snapshot.create' } },
      schema: {
        summary: 'Snapshot a running or paused VM: memory, device state and a copy of each writable disk, of one instant',
        description:
          'The VM is paused while it is captured, then runs on (or, with resume: false, is stopped). Answers once the snapshot is whole. A VM that is not running is a 409.',
        tags: ['snapshots'],
        params: VmIdParams,
        body: CreateSnapshotRequest,
        response: { 201: Snapshot, ...errors },
      },
    },
    // Its audit row names the VM (a VM's audit export shows its snapshots); the snapshot's id is in the row's summary.
    async (request, reply) => reply.status(201).send(await snapshots.create(request.params.id, request.body, callerOf(request))),
  );

  app.get(
    '/v1/vms/:id/snapshots',
    {
      config: { access: { resource: 'snapshot', verb: 'read' } },
      schema: { summary: "A VM's snapshots, newest first", tags: ['snapshots'], params: VmIdParams, response: { 200: SnapshotList, ...errors } },
    },
    async (request) => ({ items: await snapshots.listOfVm(request.params.id, callerOf(request)) }),
  );

  app.get(
    '/v1/snapshots',
    {
      config: { access: { resource: 'snapshot', verb: 'read' } },
      schema: {
        summary: 'The snapshots the caller may see, newest first (those of deleted VMs too)',
        tags: ['snapshots'],
        querystring: SnapshotListQuery,
        response: { 200: SnapshotList, ...errors },
      },
    },
    async (request) => ({ items: await snapshots.list(request.query, callerOf(request)) }),
  );

  app.get(
    '/v1/snapshots/:id',
    {
      config: { access: { resource: 'snapshot', verb: 'read' } },
      schema: { summary: 'One snapshot', tags: ['snapshots'], params: SnapshotIdParams, response: { 200: Snapshot, ...errors } },
    },
    async (request) => snapshots.get(request.params.id, callerOf(request)),
  );

  app.post(
    '/v1/snapshots/:id/instantiate',
    {
      config: { access: { resource: 'vm', verb: 'write', action: 'snapshot.instantiate' } },
      schema: {
        summary: 'Make a new VM from a snapshot: restored on its host, running, at addresses of its own (?wait= waits until it runs)',
        description:
          "The VM has the machine and disks of the VM the snapshot is of, and that VM's memory: it goes on from where that VM was, with its own id, disks, NIC and address. A snapshot whose host is gone is a 409 (snapshots are not copied across hosts).",
        tags: ['snapshots'],
        params: SnapshotIdParams,
        querystring: SettleWaitQuery,
        body: InstantiateSnapshotRequest,
        response: { 201: Vm, ...errors, 408: ErrorBody, 422: ErrorBody },
      },
    },
    async (request, reply) => {
      const vm = await vms.instantiate(request.params.id, request.body, callerOf(request));
      const wait = request.query.wait;
      if (!wait) return reply.status(201).send(vm);
      await whileAccessHolds(request, (lapsed) => vms.waitFor(vm.id, 'create', wait * 1000, lapsed));
      return reply.status(201).send(await vms.get(vm.id, callerOf(request)));
    },
  );

  app.delete(
    '/v1/snapshots/:id',
    {
      config: { access: { resource: 'snapshot', verb: 'write', action: 'snapshot.delete' } },
      schema: {
        summary: 'Delete a snapshot and its files on its host',
        tags: ['snapshots'],
        params: SnapshotIdParams,
        response: { 200: OkResponse, ...errors },
      },
    },
    async (request) => {
      await snapshots.delete(request.params.id, callerOf(request));
      return { ok: true as const };
    },
  );
}
