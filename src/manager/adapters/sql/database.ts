import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { type DirLock, lockDirectory } from '../../../kit/dir-lock.js';
import { ConnectionFaultDialect } from './connection-fault-dialect.js';
import { PGliteDialect } from './pglite-dialect.js';
import type { Schema } from './schema.js';
import type { Logger } from '../../../kit/logger.js';

// int8 (count(*), bigint columns) arrives from pg as a string and from PGlite as a number: make
// them agree. Our bigints (sizes, versions) stay far below 2^53.
pg.types.setTypeParser(20, (value) => Number(value));

export type DatabaseKind = 'pglite' | 'postgres';

export interface Database {
  readonly db: Kysely<Schema>;
  readonly kind: DatabaseKind;
  /** Where the data lives, for logs: the PGlite dir or the server URL without its password. */
  readonly location: string;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** `postgres://…`: use that server. Absent: the embedded database under `dataDir`. */
  url?: string;
  dataDir: string;
  /** Most concurrent connections to a real server. */
  poolSize?: number;
  /** Where connection errors outside a query go (a server restart drops idle connections). */
  log: Logger;
}

/** Opens the manager's database: a real Postgres when a URL is given, else embedded PGlite. */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.url ? openPostgres(options.url, options.poolSize ?? 20, options.log) : openPGlite(options.dataDir);
}

async function openPostgres(url: string, poolSize: number, log: Logger): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  // An idle client whose server connection drops emits 'error' on the pool; unhandled, that
  // would kill the process. The pool replaces the client on the next query, so log and go on.
  pool.on('error', (error) => log.warn({ err: error }, 'an idle Postgres connection failed; it will be replaced'));
  // A client checked out when its connection drops (a query or transaction in flight during a
  // server restart) emits 'error' too, and the pool listens only to idle ones: without this
  // listener that event would kill the process. The query in flight fails on its own, as
  // database_unavailable, and the pool discards the client when it is released.
  pool.on('connect', (client) => {
    client.on('error', (error) => log.debug({ err: error.message }, 'a Postgres connection in use failed'));
  });
  const db = new Kysely<Schema>({ dialect: new ConnectionFaultDialect(new PostgresDialect({ pool })) });
  const database = makeDatabase(db, 'postgres', redactUrl(url), async () => undefined);
  try {
    await database.ping();
  } catch (error) {
    await db.destroy();
    throw new Error(`cannot reach Postgres at ${redactUrl(url)}: ${(error as Error).message}`, { cause: error });
  }
  return database;
}

async function openPGlite(dataDir: string): Promise<Database> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const lock: DirLock = await lockDirectory(dataDir, 'nexus manager (embedded database)');
  try {
    const pgliteDir = join(dataDir, 'pglite');
    const pglite = await PGlite.create({ dataDir: pgliteDir });
    const db = new Kysely<Schema>({ dialect: new ConnectionFaultDialect(new PGliteDialect(pglite)) });
    return makeDatabase(db, 'pglite', pgliteDir, () => lock.release());
  } catch (error) {
    await lock.release();
    throw new Error(`cannot open the embedded database in ${dataDir}: ${(error as Error).message}`, { cause: error });
  }
}

function makeDatabase(db: Kysely<Schema>, kind: DatabaseKind, location: string, afterClose: () => Promise<void>): Database {
  let closed: Promise<void> | undefined;
  return {
    db,
    kind,
    location,
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    close: () => {
      closed ??= db.destroy().finally(afterClose);
      return closed;
    },
  };
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
