import { randomUUID } from 'node:crypto';
import { STATUS_CODES, maxHeaderSize } from 'node:http';
import type { Duplex } from 'node:stream';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv, type Options as AjvOptions } from 'ajv';
import addFormatsModule from 'ajv-formats';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import { ErrorBody } from '../contracts/errors.js';
import type { ListenAddress } from '../kit/listen-address.js';
import { NexusError } from '../kit/nexus-error.js';
import { runInRequest } from '../kit/request-context.js';
import { isStorableTimestamp } from '../kit/timestamp.js';
import type { ServerTls } from '../kit/tls-files.js';
import { foreignCharsetOf } from './body-charset.js';
import { clientErrorReplyOf, errorReplyOf } from './error-reply.js';
import { HttpMetrics } from './http-metrics.js';
import { MethodIndex } from './method-index.js';

export type HttpServer = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

export interface HttpServerOptions {
  logger: FastifyBaseLogger;
  /** Prefix of the Prometheus metric names: `nexus_manager`, `nexus_agent`. */
  metricsPrefix: string;
  /** Largest request body accepted; larger ones answer 413. Default 1 MiB. */
  bodyLimitBytes?: number;
  /** Serve HTTPS with this certificate and key instead of plain HTTP. */
  tls?: ServerTls;
  /** When set, the routes' schemas are published as OpenAPI 3 at `/openapi.json`. */
  openapi?: { title: string; version: string; description: string };
}

// ajv-formats is CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/**
 * ajv-formats' formats, with `date-time` narrowed to the instants a database stores and gives back
 * (see instantOf): a leap second or year 0000 passes ajv-formats, then fails in the driver as a 500.
 */
function withFormats(ajv: Ajv): Ajv {
  return addFormats(ajv).addFormat('date-time', { type: 'string', validate: isStorableTimestamp });
}

/**
 * Bodies are validated strictly: no coercion ("2" is not 2) and unknown fields are errors, not
 * silently dropped (Fastify's default Ajv strips them). Query strings and params are text on the
 * wire, so there numbers and booleans are coerced.
 */
function makeValidatorCompiler() {
  const common: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: true, strict: false };
  const body = withFormats(new Ajv({ ...common, coerceTypes: false }));
  const text = withFormats(new Ajv({ ...common, coerceTypes: 'array' }));
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) => (httpPart === 'body' ? body : text).compile(schema);
}

/**
 * A Fastify server with the behaviour every Nexus HTTP endpoint shares: request ids (taken from
 * `x-request-id` or minted, echoed back), one JSON log line per request, the error contract for
 * every non-2xx (validation, 404, 405, 413, 415, malformed JSON, faults), Prometheus `/metrics`,
 * and optionally `/openapi.json`.
 */
export async function createHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  // Fastify types an HTTPS server apart; every route and hook here is the same on both, so the
  // instance is typed as the plain one (`https` only changes how the socket is made).
  const transport = options.tls ? { https: { cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2' as const } } : {};
  const app = Fastify({
    ...(transport as object),
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // One line per request is written by our onResponse hook, with the fields we promise.
    logController: new LogController({ requestIdLogLabel: 'request_id', disableRequestLogging: true }),
    forceCloseConnections: true,
    return503OnClosing: true,
    // Compile the response serializers' union checks with the routes, not on each route's first answer.
    serializerOpts: { compileValidators: true },
    // What the router and Node's HTTP parser refuse is answered in the error contract too.
    frameworkErrors: (error, request, reply) => {
      reply.header('x-request-id', request.id);
      return answerError(error, request, reply);
    },
    clientErrorHandler: (error, socket) => answerClientError(error, socket, options.logger),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setValidatorCompiler(makeValidatorCompiler());
  // Only JSON is spoken: a text/plain body is a 415, not a string that fails validation later.
  app.removeContentTypeParser('text/plain');
  // JSON is UTF-8: a body declared in another charset would be read as UTF-8 and mean something else.
  app.addHook('preParsing', async (request, _reply, payload) => {
    const charset = foreignCharsetOf(request.headers['content-type']);
    const hasBody = request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
    if (charset !== undefined && hasBody) {
      throw new NexusError('unsupported_media_type', `a body in charset '${charset}' is not accepted`, {
        suggestion: 'Send the JSON body as UTF-8 (charset=utf-8, or no charset).',
      });
    }
    return payload;
  });

  const methods = new MethodIndex();
  app.addHook('onRoute', (route) => methods.add(route.method, route.url));
  // A route that declares no query takes none: an unknown parameter is refused like an unknown
  // body field, not silently ignored. CORS preflights are left alone: they carry the query of the
  // call they ask about.
  app.addHook('onRoute', (route) => {
    if (!route.schema?.querystring && ![route.method].flat().includes('OPTIONS')) {
      route.schema = { ...route.schema, querystring: { type: 'object', properties: {}, additionalProperties: false } };
    }
  });

  const metrics = new HttpMetrics(options.metricsPrefix);
  app.decorate('metrics', metrics);

  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    // Everything done for this request knows its id (calls to agents carry it on).
    runInRequest(request.id, done);
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const latencyMs = reply.elapsedTime;
    metrics.observe(request.method, route, reply.statusCode, latencyMs / 1000);
    request.log.info({ method: request.method, url: request.url, route, status: reply.statusCode, latency_ms: Math.round(latencyMs * 100) / 100 }, 'request');
  });

  app.setErrorHandler(answerError);

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? request.url;
    const allowed = methods.allowedFor(path);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      throw new NexusError('method_not_allowed', `${request.method} is not allowed on ${path}`, {
        suggestion: `Use ${allowed.join(' or ')}.`,
      });
    }
    throw new NexusError('route_not_found', `no route ${request.method} ${path}`, {
      suggestion: 'GET /openapi.json lists every route.',
    });
  });

  if (options.openapi) {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: options.openapi,
        components: { schemas: { ErrorBody } },
      },
    });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  }

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  return app;
}

/** Answers anything thrown while serving a request in the error contract, and logs it. */
function answerError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const answer = errorReplyOf(error, request.id, request.headers['content-type']);
  if (answer.unexpected) request.log.error({ err: error }, 'request failed');
  else request.log.info({ error: answer.body.error, fault_message: answer.body.fault_message }, 'request rejected');
  if (answer.body.retry_after !== undefined) reply.header('retry-after', String(answer.body.retry_after));
  return reply.status(answer.status).type('application/json').send(answer.body);
}

/**
 * Answers, in the error contract, a request Node's HTTP parser refused (a bare CR or NUL in a
 * header, Transfer-Encoding with Content-Length, two Content-Lengths, a folded header, a head past
 * its size limit). No request exists yet, so the answer is written to the socket by hand with a
 * fresh request id, unless an answer to an earlier request on the socket is in flight with its
 * head already sent (as Node itself decides): bytes of ours would land inside it. A keep-alive
 * socket whose earlier answers are complete gets the answer. The parser cannot go on, so the
 * socket closes.
 */
function answerClientError(error: Error & { code?: string; reason?: string }, socket: Duplex, log: FastifyBaseLogger): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const requestId = randomUUID();
  const answer = clientErrorReplyOf(error, requestId, maxHeaderSize);
  log.info(
    { request_id: requestId, status: answer.status, error: answer.body.error, fault_message: answer.body.fault_message, parser_code: error.code },
    'request rejected by the HTTP parser',
  );
  // Node's own answer to a client error checks the same (`_httpMessage` is the response in flight, if any).
  const inFlight = (socket as Duplex & { _httpMessage?: { _headerSent?: boolean } | null })._httpMessage;
  if (socket.writable && !inFlight?._headerSent) {
    const body = JSON.stringify(answer.body);
    socket.write(
      `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}\r\n` +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: HttpMetrics;
  }
}

/** Starts listening and answers the address actually bound (port 0 becomes the port chosen). */
export async function listenOn(app: HttpServer, address: ListenAddress): Promise<ListenAddress> {
  await app.listen({ host: address.host, port: address.port });
  const bound = app.server.address();
  return { host: address.host, port: typeof bound === 'object' && bound ? bound.port : address.port };
}
