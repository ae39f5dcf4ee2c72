/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * Access control: a rotated token keeps its previous secret for an overlap; projects get quotas;
 * audit rows carry the HTTP status and are found by time and actor quickly.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    ALTER TABLE api_token ADD COLUMN previous_secret_hash text;
    ALTER TABLE api_token ADD COLUMN previous_valid_until timestamptz;
    ALTER TABLE project ADD COLUMN max_vms integer CHECK (max_vms >= 0);
    ALTER TABLE project ADD COLUMN max_vcpus integer CHECK (max_vcpus >= 0);
    ALTER TABLE project ADD COLUMN max_memory_mib integer CHECK (max_memory_mib >= 0);
    ALTER TABLE audit ADD COLUMN status integer;
  `,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    ALTER TABLE audit DROP COLUMN status;
    ALTER TABLE project DROP COLUMN max_memory_mib;
    ALTER TABLE project DROP COLUMN max_vcpus;
    ALTER TABLE project DROP COLUMN max_vms;
    ALTER TABLE api_token DROP COLUMN previous_valid_until;
    ALTER TABLE api_token DROP COLUMN previous_secret_hash;
  `,
  );
}
