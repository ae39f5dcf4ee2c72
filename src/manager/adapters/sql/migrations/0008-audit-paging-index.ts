/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * Audit pages and exports are ordered by (created_at, id), with or without a filter by actor or
 * resource, and go on from a cursor by comparing both: indexes ending in created_at alone answer
 * that by sorting every page's candidates. Each is replaced by one ending in (created_at, id),
 * which serves everything the old one did (its first columns), so each audit write still updates
 * as many indexes. Building them on a large audit table holds audit writes until it is done.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    CREATE INDEX audit_created_id ON audit (created_at, id);
    CREATE INDEX audit_actor_created_id ON audit (actor, created_at, id);
    CREATE INDEX audit_resource_id_created_id ON audit (resource_id, created_at, id);
    DROP INDEX audit_created;
    DROP INDEX audit_actor_created;
    DROP INDEX audit_resource_id_created
  `,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    CREATE INDEX audit_created ON audit (created_at);
    CREATE INDEX audit_actor_created ON audit (actor, created_at);
    CREATE INDEX audit_resource_id_created ON audit (resource_id, created_at);
    DROP INDEX audit_created_id;
    DROP INDEX audit_actor_created_id;
    DROP INDEX audit_resource_id_created_id
  `,
  );
}
