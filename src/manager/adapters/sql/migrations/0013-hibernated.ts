/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/** A VM may be wanted `hibernated`: its memory saved on its host and its VMM ended. */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    ALTER TABLE vm DROP CONSTRAINT vm_desired_state_check;
    ALTER TABLE vm ADD CONSTRAINT vm_desired_state_check CHECK (desired_state IN ('running', 'stopped', 'paused', 'hibernated', 'deleted'))
  `,
  );
}

/** Back to four desired states: a VM wanted hibernated is wanted stopped (its saved memory is lost on its next start). */
export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    UPDATE vm SET desired_state = 'stopped' WHERE desired_state = 'hibernated';
    ALTER TABLE vm DROP CONSTRAINT vm_desired_state_check;
    ALTER TABLE vm ADD CONSTRAINT vm_desired_state_check CHECK (desired_state IN ('running', 'stopped', 'paused', 'deleted'))
  `,
  );
}
