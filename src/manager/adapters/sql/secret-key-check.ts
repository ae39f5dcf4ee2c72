import { type Kysely, sql } from 'kysely';
import { NexusError } from '../../../kit/nexus-error.js';
import type { SecretBox } from '../../../kit/secret-box.js';
import { KEY_CHECK_TEXT, SEALED_PURPOSE } from './sealed-purposes.js';
import type { Schema } from './schema.js';

/**
 * Whether the database holds a sealed value: the check value or a host credential, both kept
 * since migration 0007. Before it (a new database, or one from before sealing) nothing is
 * sealed, and the manager may make its key; after it, the key must already exist. Only reads.
 */
export async function holdsSealedSecrets(db: Kysely<Schema>): Promise<boolean> {
  const table = await sql<{ present: boolean }>`SELECT to_regclass('secret_key_check') IS NOT NULL AS present`.execute(db);
  if (!table.rows[0]?.present) return false;
  const sealed = await sql<{ sealed: boolean }>`SELECT EXISTS (SELECT 1 FROM secret_key_check) OR EXISTS (SELECT 1 FROM host) AS sealed`.execute(db);
  return sealed.rows[0]?.sealed === true;
}

/**
 * Refuses a key the database's secrets were not sealed with, before anything is sealed or opened
 * with it: the check value written with the first key must open, and so must a stored host
 * credential. Otherwise a manager given another key (a new data dir, a second manager on the same
 * Postgres without NEXUS_SECRET_KEY_FILE) would fail on every agent call, or seal new credentials
 * no other manager can read.
 */
export async function verifySecretKey(db: Kysely<Schema>, secrets: SecretBox, keyFile: string): Promise<void> {
  // A database whose check row was removed gets one again; the stored credentials still decide.
  await db
    .insertInto('secret_key_check')
    .values({ id: 1, sealed: secrets.seal(KEY_CHECK_TEXT, SEALED_PURPOSE.keyCheck) })
    .onConflict((conflict) => conflict.column('id').doNothing())
    .execute();
  const check = await db.selectFrom('secret_key_check').select('sealed').where('id', '=', 1).executeTakeFirstOrThrow();
  const host = await db.selectFrom('host').select('credential_sealed').limit(1).executeTakeFirst();
  try {
    if (secrets.open(check.sealed, SEALED_PURPOSE.keyCheck) !== KEY_CHECK_TEXT) throw new Error('the check value opened to something else');
    if (host) secrets.open(host.credential_sealed, SEALED_PURPOSE.hostCredential);
  } catch (error) {
    throw new NexusError('bad_request', `the database's sealed secrets do not open with the key in ${keyFile}: they were sealed with another key`, {
      cause: error,
      suggestion:
        'Point NEXUS_SECRET_KEY_FILE at the key file this database was first used with (every manager sharing a database needs the same one). ' +
        'If that key is lost, the hosts must be enrolled again (see docs/security.md).',
    });
  }
}
