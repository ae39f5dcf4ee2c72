/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import { type Kysely, sql } from 'kysely';

/** One statement per query: the extended protocol (PGlite, pg with parameters) takes no batches. */
export async function runStatements(db: Kysely<any>, script: string): Promise<void> {
  for (const statement of script.split(/;\s*\n/)) {
    if (statement.trim()) await sql.raw(statement).execute(db);
  }
}
