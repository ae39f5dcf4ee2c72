import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type DatabaseConnection,
  type Dialect,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
  sql,
} from 'kysely';
import { ConnectionFaultDialect, asDatabaseFault, isConnectionFault } from '../../../src/manager/adapters/sql/connection-fault-dialect.js';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { errorReplyOf } from '../../../src/http/error-reply.js';

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

describe('connection faults', () => {
  it('recognises a server that is away, in every form node-postgres reports it', () => {
    const faults: unknown[] = [
      withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'),
      withCode('read ECONNRESET', 'ECONNRESET'),
      withCode('write EPIPE', 'EPIPE'),
      withCode('terminating connection due to administrator command', '57P01'),
      withCode('the database system is starting up', '57P03'),
      withCode('the database system is shutting down', '57P03'),
      withCode('sorry, too many clients already', '53300'),
      withCode('connection failure', '08006'),
      withCode('could not establish connection', '08001'),
      new Error('Connection terminated unexpectedly'),
      new Error('Connection terminated due to connection timeout'),
      new Error('Client has encountered a connection error and is not queryable'),
      new Error('timeout exceeded when trying to connect'),
      new AggregateError([withCode('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED'), withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')]),
      new Error('while listing VMs', { cause: withCode('read ECONNRESET', 'ECONNRESET') }),
    ];
    for (const fault of faults) assert.equal(isConnectionFault(fault), true, `${(fault as Error).message} is a connection fault`);
  });

  it("leaves the query's own faults alone (they are bugs or bad input, not an absent server)", () => {
    const faults: unknown[] = [
      withCode('duplicate key value violates unique constraint', '23505'),
      withCode('syntax error at or near "selec"', '42601'),
      withCode('value too long for type character varying(64)', '22001'),
      withCode('permission denied for table vm', '42501'),
      new Error('no result'),
      'Connection terminated',
      undefined,
    ];
    for (const fault of faults) assert.equal(isConnectionFault(fault), false, `${String((fault as Error)?.message ?? fault)} is not a connection fault`);
  });

  it('becomes database_unavailable, a 503 with retry_after in the error contract', () => {
    const fault = asDatabaseFault(withCode('terminating connection due to administrator command', '57P01'));
    assert.ok(fault instanceof NexusError, 'a NexusError');
    assert.equal(fault.code, 'database_unavailable');
    assert.equal(fault.terminal, false);
    const answer = errorReplyOf(fault, 'req-1');
    assert.equal(answer.status, 503);
    assert.equal(answer.unexpected, false);
    assert.equal(answer.body.error, 'database_unavailable');
    assert.ok((answer.body.retry_after ?? 0) > 0, `retry_after is set: ${answer.body.retry_after}`);
    assert.match(answer.body.fault_message ?? '', /the database is unavailable \(57P01\)/);
    // Not a connection fault: passed on untouched, still a 500 the logs show with its stack.
    const bug = withCode('syntax error', '42601');
    assert.equal(asDatabaseFault(bug), bug);
  });
});

/** An inner driver that fails as a restarting server does, and checks it only ever gets its own connections back. */
class FailingDriver implements Driver {
  readonly own = new Set<DatabaseConnection>();
  released = 0;
  constructor(private readonly fail: () => Error) {}
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    const connection: DatabaseConnection = {
      executeQuery: async <R>(): Promise<QueryResult<R>> => {
        throw this.fail();
      },
      // eslint-disable-next-line require-yield
      streamQuery: async function* <R>(): AsyncIterableIterator<QueryResult<R>> {
        throw new Error('not streamed here');
      },
    };
    this.own.add(connection);
    return connection;
  }
  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery({ sql: 'begin', parameters: [], query: { kind: 'RawNode' } } as never);
  }
  async commitTransaction(): Promise<void> {}
  async rollbackTransaction(): Promise<void> {}
  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    assert.ok(this.own.has(connection), 'the inner driver is handed back its own connection, not the wrapper');
    this.released++;
  }
  async destroy(): Promise<void> {}
}

function dialectOver(driver: Driver): Dialect {
  return {
    createDriver: () => driver,
    createQueryCompiler: () => new PostgresQueryCompiler(),
    createAdapter: () => new PostgresAdapter(),
    createIntrospector: (db) => new PostgresIntrospector(db),
  };
}

describe('ConnectionFaultDialect', () => {
  it('turns a connection fault from any query or transaction into database_unavailable, and releases the inner connection', async () => {
    const driver = new FailingDriver(() => withCode('read ECONNRESET', 'ECONNRESET'));
    const db = new Kysely<unknown>({ dialect: new ConnectionFaultDialect(dialectOver(driver)) });
    await assert.rejects(sql`select 1`.execute(db), (error: unknown) => error instanceof NexusError && error.code === 'database_unavailable');
    await assert.rejects(
      db.transaction().execute(async () => undefined),
      (error: unknown) => error instanceof NexusError && error.code === 'database_unavailable',
    );
    assert.equal(driver.released, 2);
    await db.destroy();
  });

  it('passes any other fault on as it is', async () => {
    const driver = new FailingDriver(() => withCode('duplicate key value violates unique constraint', '23505'));
    const db = new Kysely<unknown>({ dialect: new ConnectionFaultDialect(dialectOver(driver)) });
    await assert.rejects(sql`select 1`.execute(db), (error: unknown) => (error as { code?: string }).code === '23505');
    await db.destroy();
  });
});
