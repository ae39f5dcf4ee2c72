import { ErrorBody } from '../../../contracts/errors.js';
import { Image, ImageIdParams, ImageList, ImageListQuery } from '../../../contracts/image-api.js';
import type { HttpServer } from '../../../http/http-server.js';
import type { ManagerServices } from '../manager-services.js';

export function registerImageRoutes(app: HttpServer, services: ManagerServices): void {
  const { images } = services;

  app.get(
    '/v1/images',
    {
      config: { access: { resource: 'image', verb: 'read' } },
      schema: {
        summary: 'List the images the hosts hold (reported with their heartbeats)',
        tags: ['images'],
        querystring: ImageListQuery,
        response: { 200: ImageList, 400: ErrorBody },
      },
    },
    async (request) => ({ items: await images.list(request.query) }),
  );

  app.get(
    '/v1/images/:id',
    {
      config: { access: { resource: 'image', verb: 'read' } },
      schema: { summary: 'One image', tags: ['images'], params: ImageIdParams, response: { 200: Image, 400: ErrorBody, 404: ErrorBody } },
    },
    async (request) => images.get(request.params.id),
  );
}
