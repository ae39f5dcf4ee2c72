import { ErrorBody } from '../../../contracts/errors.js';
import { CreateNetworkRequest, Network, NetworkIdParams, NetworkList, NetworkListQuery, UpdateNetworkRequest } from '../../../contracts/network-api.js';
import { OkResponse } from '../../../contracts/vm-api.js';
import type { HttpServer } from '../../../http/http-server.js';
import type { ManagerServices } from '../manager-services.js';
import { callerOf } from '../access-control.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody };

export function registerNetworkRoutes(app: HttpServer, services: ManagerServices): void {
  const { networks } = services;

  app.post(
    '/v1/networks',
    {
      config: { access: { resource: 'network', verb: 'write', action: 'network.create' } },
      schema: {
        summary: 'Create a network: a block VMs get addresses from, isolated from every other network',
        tags: ['networks'],
        body: CreateNetworkRequest,
        response: { 201: Network, ...errors },
      },
    },
    async (request, reply) => reply.status(201).send(await networks.create(request.body, callerOf(request))),
  );

  app.get(
    '/v1/networks',
    {
      config: { access: { resource: 'network', verb: 'read' } },
      schema: {
        summary: 'List the networks the caller may see, by project and name',
        tags: ['networks'],
        querystring: NetworkListQuery,
        response: { 200: NetworkList, ...errors },
      },
    },
    async (request) => ({ items: await networks.list(request.query, callerOf(request)) }),
  );

  app.get(
    '/v1/networks/:id',
    {
      config: { access: { resource: 'network', verb: 'read' } },
      schema: { summary: 'One network', tags: ['networks'], params: NetworkIdParams, response: { 200: Network, ...errors } },
    },
    async (request) => networks.get(request.params.id, callerOf(request)),
  );

  app.patch(
    '/v1/networks/:id',
    {
      config: { access: { resource: 'network', verb: 'write', action: 'network.update' } },
      schema: {
        summary: "Change a network's egress or DNS servers (its block stays)",
        tags: ['networks'],
        params: NetworkIdParams,
        body: UpdateNetworkRequest,
        response: { 200: Network, ...errors },
      },
    },
    async (request) => networks.update(request.params.id, request.body, callerOf(request)),
  );

  app.delete(
    '/v1/networks/:id',
    {
      config: { access: { resource: 'network', verb: 'write', action: 'network.delete' } },
      schema: {
        summary: 'Delete a network no VM has an address in (409 names them)',
        tags: ['networks'],
        params: NetworkIdParams,
        response: { 200: OkResponse, ...errors },
      },
    },
    async (request) => {
      await networks.delete(request.params.id, callerOf(request));
      return { ok: true as const };
    },
  );
}
