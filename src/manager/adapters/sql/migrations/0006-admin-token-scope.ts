/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * An admin token acts on every project, so it names none. Admin tokens minted with a project
 * before this rule acted on every project all the same: their project is cleared, so the token
 * list shows what they can do, and a check keeps the rule for every writer.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    UPDATE api_token SET project_id = NULL, updated_at = now() WHERE role = 'admin' AND project_id IS NOT NULL;
    ALTER TABLE api_token ADD CONSTRAINT api_token_admin_every_project CHECK (role <> 'admin' OR project_id IS NULL);
  `,
  );
}

/** The check goes; the projects cleared from admin tokens stay cleared (they never limited anything). */
export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(db, 'ALTER TABLE api_token DROP CONSTRAINT api_token_admin_every_project');
}
