import { apiTokenFor } from './test-manager.js';

export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

export interface EventStream {
  status: number;
  headers: Headers;
  /** The next event, or undefined once the server ended the stream. Rejects after `timeoutMs`. */
  next(timeoutMs?: number): Promise<SseEvent | undefined>;
  /** Events until `until` holds for one (answered last), within `timeoutMs`. */
  until(until: (event: SseEvent) => boolean, timeoutMs: number): Promise<SseEvent[]>;
  close(): void;
}

/** Opens a text/event-stream with fetch and parses it as a browser's EventSource would (comments skipped). */
export async function openEventStream(url: string, headers: Record<string, string> = {}): Promise<EventStream> {
  const abort = new AbortController();
  const token = apiTokenFor(url);
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    signal: abort.signal,
  });
  const reader = response.body?.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let ended = !response.ok || !reader;
  const queued: SseEvent[] = [];

  const pull = async (): Promise<void> => {
    if (!reader) return;
    const { done, value } = await reader.read();
    if (done) {
      ended = true;
      return;
    }
    buffer += decoder.decode(value, { stream: true });
    for (let cut = buffer.indexOf('\n\n'); cut !== -1; cut = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event: SseEvent = { event: 'message', id: undefined, data: '' };
      let hasData = false;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event.event = value;
        else if (field === 'id') event.id = value;
        else if (field === 'data') {
          event.data = hasData ? `${event.data}\n${value}` : value;
          hasData = true;
        }
      }
      if (hasData) queued.push(event);
    }
  };

  const next = async (timeoutMs = 10_000): Promise<SseEvent | undefined> => {
    const deadline = Date.now() + timeoutMs;
    while (queued.length === 0 && !ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event from ${url} within ${timeoutMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        pull(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no event from ${url} within ${timeoutMs} ms`)), left);
        }),
      ]).finally(() => clearTimeout(timer));
    }
    return queued.shift();
  };

  return {
    status: response.status,
    headers: response.headers,
    next,
    async until(until, timeoutMs) {
      const seen: SseEvent[] = [];
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const event = await next(Math.max(1, deadline - Date.now()));
        if (!event) throw new Error(`the stream ended before the awaited event; saw ${JSON.stringify(seen.slice(-5))}`);
        seen.push(event);
        if (until(event)) return seen;
      }
    },
    close: () => abort.abort(),
  };
}
