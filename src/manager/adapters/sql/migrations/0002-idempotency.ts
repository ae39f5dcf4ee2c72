/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import { type Kysely, sql } from 'kysely';

/** Answers to POSTs that carried an Idempotency-Key, so a retry gets the first answer. */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE idempotency_key (
      key text PRIMARY KEY,
      request_hash text NOT NULL,
      status_code integer,
      response jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX idempotency_key_created ON idempotency_key (created_at)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE idempotency_key`.execute(db);
}
