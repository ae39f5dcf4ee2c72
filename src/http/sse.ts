import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type AccessLapsed, AccessWatch, type AccessWatchOptions } from './access-watch.js';

export interface SseStreamOptions {
  /** How often a comment keeps an idle connection open through proxies. Default 15 s. */
  keepaliveMs?: number;
  /** How the caller's access is watched (tests shorten it). */
  watch?: Partial<AccessWatchOptions>;
}

/** A relayed event this large without an end is not an event stream we know: the relay stops. */
const MAX_RELAYED_EVENT_BYTES = 4 * 1024 * 1024;
const EVENT_END = Buffer.from('\n\n');

/**
 * A Server-Sent Events answer on a Fastify reply: the reply is taken over (hijacked), a comment
 * keeps idle connections open through proxies, and `closed` aborts when the client goes away.
 * Every event stream goes through here, so every one of them is watched by an {@link AccessWatch}
 * of its request's caller: when the caller's access lapses, a last `end` event carrying the reason
 * is sent and the stream closes, whatever the route was doing.
 */
export class SseStream {
  private readonly abort = new AbortController();
  private readonly keepalive: NodeJS.Timeout;
  private readonly watch: AccessWatch;

  constructor(
    request: FastifyRequest,
    private readonly reply: FastifyReply,
    options: SseStreamOptions = {},
  ) {
    takeOverForEvents(request, reply);
    this.keepalive = setInterval(() => this.write(': keepalive\n\n'), options.keepaliveMs ?? 15_000);
    this.watch = new AccessWatch(request.accessGuard, options.watch);
    this.watch.lapsed.addEventListener('abort', () => this.end((this.watch.lapsed.reason as AccessLapsed).reason), { once: true });
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

  /** Ends the stream; with a reason, a last `end` event says it (data `{"reason": …}`). */
  end(reason?: string): void {
    if (reason !== undefined) this.send({ event: 'end', data: JSON.stringify({ reason }) });
    if (!this.reply.raw.writableEnded) this.reply.raw.end();
    this.close();
  }

  /**
   * Passes on another server's event stream until it ends or this one closes. Only whole events
   * are passed (an upstream chunk may stop mid-event), so an `end` of ours never lands inside one
   * of theirs. The caller stops the upstream when `closed` aborts.
   */
  async relay(upstream: Readable): Promise<void> {
    let pending = Buffer.alloc(0);
    for await (const chunk of upstream) {
      if (this.closed.aborted) return;
      pending = Buffer.concat([pending, chunk as Buffer]);
      const cut = pending.lastIndexOf(EVENT_END);
      if (cut === -1) {
        if (pending.length > MAX_RELAYED_EVENT_BYTES) throw new Error(`the upstream sent ${pending.length} bytes without ending an event`);
        continue;
      }
      const whole = pending.subarray(0, cut + EVENT_END.length);
      pending = pending.subarray(cut + EVENT_END.length);
      if (!this.write(whole)) await this.drained();
    }
  }

  /** False when the socket's buffer is full: wait for `drained` before writing more. */
  private write(data: string | Buffer): boolean {
    if (this.abort.signal.aborted || this.reply.raw.writableEnded) return true;
    return this.reply.raw.write(data);
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.reply.raw.off('drain', done);
        this.closed.removeEventListener('abort', done);
        resolve();
      };
      this.reply.raw.on('drain', done);
      this.closed.addEventListener('abort', done, { once: true });
    });
  }

  private close(): void {
    clearInterval(this.keepalive);
    this.watch.stop();
    this.abort.abort();
  }
}

/**
 * Takes the reply over from Fastify and sends the head of an event stream (no buffering by
 * proxies, the request id), keeping the headers hooks already set (rate limits, CORS). Private to
 * {@link SseStream}, so that no event stream escapes its watch.
 */
function takeOverForEvents(request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack();
  const set: Record<string, string | number | string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) set[name] = value;
  reply.raw.writeHead(200, {
    ...set,
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
