import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
} from 'kysely';
import { isBackgroundWork } from '../../../kit/work-priority.js';

/**
 * Kysely over an embedded PGlite database. PGlite is one session: an open transaction captures
 * every query sent to the handle. So the driver hands out its single connection to one holder at
 * a time (requests first, then background work, each in arrival order), and a transaction keeps
 * it until commit or rollback.
 */
export class PGliteDialect implements Dialect {
  constructor(private readonly pglite: PGlite) {}

  createDriver(): Driver {
    return new PGliteDriver(this.pglite);
  }
  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }
  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

class PGliteDriver implements Driver {
  private readonly connection: PGliteConnection;
  private held = false;
  /** Waiting holders: requests' first, background work's after (see `inBackground`). */
  private readonly waiting: { foreground: Array<() => void>; background: Array<() => void> } = { foreground: [], background: [] };
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => undefined;

  constructor(private readonly pglite: PGlite) {
    this.connection = new PGliteConnection(pglite);
  }

  async init(): Promise<void> {
    await this.pglite.waitReady;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    if (this.held) {
      const queue = isBackgroundWork() ? this.waiting.background : this.waiting.foreground;
      await new Promise<void>((resolve) => queue.push(resolve));
    } else {
      this.held = true;
      this.idle = new Promise<void>((resolve) => {
        this.markIdle = resolve;
      });
    }
    return this.connection;
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin'));
  }
  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  }
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  /**
   * Hands the session to the next holder on a later turn of the event loop, not in the same
   * microtask run: a loop of back-to-back queries must not keep the process from reading requests.
   */
  async releaseConnection(): Promise<void> {
    setImmediate(() => {
      const next = this.waiting.foreground.shift() ?? this.waiting.background.shift();
      if (next) return next();
      this.held = false;
      this.markIdle();
    });
  }

  async destroy(): Promise<void> {
    await this.idle;
    if (!this.pglite.closed) await this.pglite.close();
  }
}

class PGliteConnection implements DatabaseConnection {
  constructor(private readonly pglite: PGlite) {}

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.pglite.query<R>(compiled.sql, [...compiled.parameters]);
    const affected = result.affectedRows ?? 0;
    const command = result.command;
    const changesRows = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
    return {
      rows: result.rows,
      ...(changesRows ? { numAffectedRows: BigInt(affected) } : {}),
    };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming queries are not supported on the embedded database');
  }
}
