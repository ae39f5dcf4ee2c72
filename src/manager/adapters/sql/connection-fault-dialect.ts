import type {
  CompiledQuery,
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  DialectAdapter,
  Driver,
  Kysely,
  QueryCompiler,
  QueryResult,
  TransactionSettings,
} from 'kysely';
import { NexusError } from '../../../kit/nexus-error.js';

/** How long a caller is told to wait when the database is away: a Postgres restart takes a few seconds. */
export const DATABASE_RETRY_AFTER_SECONDS = 2;

/** Socket errors of a server that is not there (refused, reset, unreachable, timed out). */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/**
 * SQLSTATEs that say the server, not the query, is the problem: 57P01 admin_shutdown (a fast or
 * immediate stop), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or shutting down),
 * 53300 too_many_connections. Class 08 (connection exceptions) is matched by its prefix.
 */
const SERVER_STATES = new Set(['57P01', '57P02', '57P03', '53300']);
/** node-postgres reports a dropped or never-made connection in words, without a code. */
const CLIENT_MESSAGES = [/^Connection terminated/, /is not queryable/, /^timeout exceeded when trying to connect/];

/**
 * True when `error` (or what caused it) means the database could not be reached or dropped the
 * connection: retrying later may succeed, and the query itself was not at fault.
 */
export function isConnectionFault(error: unknown, depth = 0): boolean {
  if (depth > 4 || typeof error !== 'object' || error === null) return false;
  const { code, message, cause, errors } = error as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string' && (SOCKET_CODES.has(code) || SERVER_STATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
  if (typeof message === 'string' && CLIENT_MESSAGES.some((pattern) => pattern.test(message))) return true;
  // A host name with several addresses fails with one error per address, gathered in an AggregateError.
  if (Array.isArray(errors) && errors.some((inner) => isConnectionFault(inner, depth + 1))) return true;
  return isConnectionFault(cause, depth + 1);
}

/** `error` as the caller should see it: a connection fault becomes `database_unavailable` (503, Retry-After). */
export function asDatabaseFault(error: unknown): unknown {
  if (error instanceof NexusError || !isConnectionFault(error)) return error;
  const { code, message } = error as { code?: unknown; message?: unknown };
  const reason = typeof code === 'string' ? code : String(message);
  return new NexusError('database_unavailable', `the database is unavailable: ${String(message)}`, {
    faultMessage: `the database is unavailable (${reason})`,
    suggestion:
      'Retry after the Retry-After delay (with the same Idempotency-Key, if the call sent one). If it persists, check the database server (GET /readyz).',
    terminal: false,
    retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
    cause: error,
  });
}

async function translated<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw asDatabaseFault(error);
  }
}

/**
 * Wraps a Kysely dialect so that every connection fault, from any query, transaction or
 * connection attempt, arrives as `database_unavailable`. The one place where "the database is
 * away" becomes a code: the HTTP edge answers it 503 with Retry-After instead of a 500, and
 * background loops see a retryable error.
 */
export class ConnectionFaultDialect implements Dialect {
  constructor(private readonly inner: Dialect) {}

  createDriver(): Driver {
    return new ConnectionFaultDriver(this.inner.createDriver());
  }
  createQueryCompiler(): QueryCompiler {
    return this.inner.createQueryCompiler();
  }
  createAdapter(): DialectAdapter {
    return this.inner.createAdapter();
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return this.inner.createIntrospector(db);
  }
}

/**
 * Must stay true: the inner driver only ever sees its own connections (Kysely's Postgres driver
 * releases a connection through a private member the wrapper does not have).
 */
class ConnectionFaultDriver implements Driver {
  private readonly innerOf = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(private readonly inner: Driver) {
    const { savepoint, rollbackToSavepoint, releaseSavepoint } = inner;
    if (savepoint) this.savepoint = (connection, name, compile) => translated(() => savepoint.call(inner, this.unwrap(connection), name, compile));
    if (rollbackToSavepoint) {
      this.rollbackToSavepoint = (connection, name, compile) => translated(() => rollbackToSavepoint.call(inner, this.unwrap(connection), name, compile));
    }
    if (releaseSavepoint) {
      this.releaseSavepoint = (connection, name, compile) => translated(() => releaseSavepoint.call(inner, this.unwrap(connection), name, compile));
    }
  }

  savepoint?: Driver['savepoint'];
  rollbackToSavepoint?: Driver['rollbackToSavepoint'];
  releaseSavepoint?: Driver['releaseSavepoint'];

  init(): Promise<void> {
    return translated(() => this.inner.init());
  }
  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await translated(() => this.inner.acquireConnection());
    const wrapped = new ConnectionFaultConnection(connection);
    this.innerOf.set(wrapped, connection);
    return wrapped;
  }
  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return translated(() => this.inner.beginTransaction(this.unwrap(connection), settings));
  }
  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return translated(() => this.inner.commitTransaction(this.unwrap(connection)));
  }
  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return translated(() => this.inner.rollbackTransaction(this.unwrap(connection)));
  }
  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.inner.releaseConnection(this.unwrap(connection));
  }
  destroy(): Promise<void> {
    return this.inner.destroy();
  }

  private unwrap(connection: DatabaseConnection): DatabaseConnection {
    return this.innerOf.get(connection) ?? connection;
  }
}

class ConnectionFaultConnection implements DatabaseConnection {
  constructor(private readonly inner: DatabaseConnection) {}

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    return translated(() => this.inner.executeQuery<R>(compiled));
  }

  async *streamQuery<R>(compiled: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    try {
      yield* this.inner.streamQuery<R>(compiled, chunkSize);
    } catch (error) {
      throw asDatabaseFault(error);
    }
  }
}
