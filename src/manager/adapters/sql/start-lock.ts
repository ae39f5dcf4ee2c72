import pg from 'pg';
import type { Logger } from 'pino';
import { messageOf } from '../../../kit/nexus-error.js';

/**
 * "nexus start" as a fixed 64-bit key, distinct from the leadership lock's: every manager of one
 * database takes it while it starts.
 */
const START_LOCK_KEY = '478560413033';

/**
 * Runs a manager's start-up writes (migrations, the key check row, the first admin token) while
 * holding a Postgres session advisory lock, so that managers starting together on one database
 * take turns: the second sees the first one's schema and token and mints none. Without it, two
 * managers on an empty database both count zero tokens and both mint a "first" admin token.
 *
 * The lock is held on a connection of its own, which is ended afterwards: ending the session is
 * what frees the lock, whatever happened meanwhile, and a manager that dies while it starts (kill
 * -9) frees it with its connection. On the embedded database (`url` undefined) `work` just runs:
 * its data-dir lock already keeps every other process out.
 */
export async function holdingStartLock<T>(url: string | undefined, log: Logger, work: () => Promise<T>): Promise<T> {
  if (url === undefined) return work();
  const client = new pg.Client({ connectionString: url });
  // A connection that fails while held ends its session, so the lock is gone too: the error is
  // logged here and the work's own queries, on other connections, carry on or fail by themselves.
  client.on('error', (error) => log.warn({ err: messageOf(error) }, 'the start lock connection failed'));
  try {
    try {
      await client.connect();
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [START_LOCK_KEY]);
      if (rows[0]?.locked !== true) {
        log.info('another manager is starting on this database (migrating it, or minting the first admin token): waiting for it');
        await client.query('SELECT pg_advisory_lock($1::bigint)', [START_LOCK_KEY]);
      }
    } catch (error) {
      throw new Error(`taking the start lock on the database: ${messageOf(error)}`, { cause: error });
    }
    return await work();
  } finally {
    await client
      .end()
      .catch((error: unknown) => log.warn({ err: messageOf(error) }, 'could not close the start lock connection; its session ends with the process'));
  }
}
