import { type Socket, createConnection } from 'node:net';
import { NexusError } from '../../../kit/nexus-error.js';

interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
  event?: string;
  data?: unknown;
  QMP?: unknown;
  id?: unknown;
}

export interface QmpEvent {
  event: string;
  data?: unknown;
}

/**
 * One QMP session over a unix socket: greeting, `qmp_capabilities`, then commands answered in
 * order. Events arrive between replies and are collected, never mistaken for a reply. QMP serves
 * one client per monitor at a time, so callers keep sessions short and serialized per VM.
 */
export class QmpClient {
  private buffer = '';
  private readonly waiting: Array<{ resolve: (reply: QmpReply) => void; reject: (error: Error) => void }> = [];
  readonly events: QmpEvent[] = [];
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly path: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const fail = (error: Error) => {
      this.closedError ??= error;
      for (const waiter of this.waiting.splice(0)) waiter.reject(error);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error(`QMP socket ${path} closed`)));
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const socket = createConnection(path);
    const client = new QmpClient(socket, path);
    try {
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('error', reject);
        }),
        timeoutMs,
        `connecting to QMP at ${path}`,
      );
      await withTimeout(client.next(), timeoutMs, 'waiting for the QMP greeting');
      await client.execute('qmp_capabilities', undefined, timeoutMs);
      return client;
    } catch (error) {
      socket.destroy();
      throw new NexusError('unavailable', `QMP at ${path}: ${(error as Error).message}`, { cause: error, terminal: false });
    }
  }

  /** Runs a command and answers its `return` value; a QMP error becomes a NexusError. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    const message = JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args });
    if (this.closedError) throw this.closedError;
    this.socket.write(`${message}\n`);
    const reply = await withTimeout(this.next(), timeoutMs, `QMP ${command}`);
    if (reply.error) {
      throw new NexusError('vmm_failed', `QEMU refused ${command}: ${reply.error.desc}`);
    }
    return reply.return as T;
  }

  close(): void {
    this.socket.destroy();
  }

  /** The next message that is not an event. */
  private next(): Promise<QmpReply> {
    return new Promise((resolve, reject) => {
      if (this.closedError) return reject(this.closedError);
      this.waiting.push({ resolve, reject });
      this.drain();
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    this.drain();
  }

  private drain(): void {
    let newline: number;
    while (this.waiting.length > 0 && (newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      const message = JSON.parse(line) as QmpReply;
      if (message.event) {
        this.events.push({ event: message.event, data: message.data });
        continue;
      }
      this.waiting.shift()?.resolve(message);
    }
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Opens a session, runs `body`, closes the session whatever happens. */
export async function withQmp<T>(path: string, body: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(path);
  try {
    return await body(qmp);
  } finally {
    qmp.close();
  }
}
