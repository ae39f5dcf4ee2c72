/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * Host credentials rotate in place. A rotation first records the credential it will hand the
 * agent (next_credential), then gives it to the agent, then makes it the credential. A manager
 * that dies between the last two steps loses nothing: the agent's next heartbeat, made with the
 * new credential, completes the rotation.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    ALTER TABLE host ADD COLUMN next_credential text;
    ALTER TABLE host ADD COLUMN credential_rotated_at timestamptz;
  `,
  );
}
