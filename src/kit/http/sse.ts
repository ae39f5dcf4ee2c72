import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * A Server-Sent Events answer on a Fastify reply: the reply is taken over (hijacked), a comment
 * keeps idle connections open through proxies, and `closed` aborts when the client goes away.
 */
export class SseStream {
  private readonly abort = new AbortController();
  private readonly keepalive: NodeJS.Timeout;

  constructor(request: FastifyRequest, private readonly reply: FastifyReply, keepaliveMs = 15_000) {
    takeOverForEvents(request, reply);
    this.keepalive = setInterval(() => this.write(': keepalive\n\n'), keepaliveMs);
    reply.raw.on('close', () => this.close());
  }

  /** Aborts when the client has gone or the stream was ended. */
  get closed(): AbortSignal {
    return this.abort.signal;
  }

  /** One event; `data` must hold no newline (each line of a multi-line payload would need its own field). */
  send(event: { id?: string | number; event?: string; data: string }): void {
    let text = '';
    if (event.event && event.event !== 'message') text += `event: ${event.event}\n`;
    if (event.id !== undefined) text += `id: ${event.id}\n`;
    text += `data: ${event.data.replace(/[\r\n]/g, ' ')}\n\n`;
    this.write(text);
  }

  end(): void {
    if (!this.reply.raw.writableEnded) this.reply.raw.end();
    this.close();
  }

  private write(text: string): void {
    if (!this.abort.signal.aborted && !this.reply.raw.writableEnded) this.reply.raw.write(text);
  }

  private close(): void {
    clearInterval(this.keepalive);
    this.abort.abort();
  }
}

/**
 * Takes the reply over from Fastify and sends the head of an event stream (no buffering by
 * proxies, the request id), for a handler that writes the events itself or relays them.
 */
export function takeOverForEvents(request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack();
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': request.id,
  });
  reply.raw.flushHeaders();
}

/** The Last-Event-ID a reconnecting EventSource sends, as a byte offset; undefined when absent or not one. */
export function lastEventOffset(request: FastifyRequest): number | undefined {
  const header = request.headers['last-event-id'];
  const text = Array.isArray(header) ? header[0] : header;
  return text !== undefined && /^[0-9]{1,15}$/.test(text) ? Number(text) : undefined;
}
