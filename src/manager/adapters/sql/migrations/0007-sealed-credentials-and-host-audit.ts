/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely, Migration } from 'kysely';
import { hashSecret } from '../../../../kit/secret.js';
import type { SecretBox } from '../../../../kit/secret-box.js';
import { KEY_CHECK_TEXT, SEALED_PURPOSE } from '../sealed-purposes.js';
import { runStatements } from './run-statements.js';

/**
 * No host credential in the clear: each is kept as its SHA-256 (what an agent's heartbeat is
 * checked against) and sealed under the manager's key (the copy the manager presents to the
 * agent). The credentials already stored are sealed here, then the clear columns dropped; a check
 * value sealed with the same key lets a manager given another key refuse to start.
 *
 * Also: a join token may name the ready host it is allowed to replace, and audit rows keep the
 * address of the caller.
 */
export function sealedCredentialsAndHostAudit(secrets: SecretBox): Migration {
  return {
    async up(db: Kysely<any>): Promise<void> {
      await runStatements(
        db,
        `
        ALTER TABLE host ADD COLUMN credential_hash text;
        ALTER TABLE host ADD COLUMN credential_sealed text;
        ALTER TABLE host ADD COLUMN next_credential_hash text;
        ALTER TABLE host ADD COLUMN next_credential_sealed text
      `,
      );
      const hosts = await db.selectFrom('host').select(['id', 'credential', 'next_credential']).execute();
      for (const host of hosts as Array<{ id: string; credential: string; next_credential: string | null }>) {
        const next = host.next_credential;
        await db
          .updateTable('host')
          .set({
            credential_hash: hashSecret(host.credential),
            credential_sealed: secrets.seal(host.credential, SEALED_PURPOSE.hostCredential),
            next_credential_hash: next === null ? null : hashSecret(next),
            next_credential_sealed: next === null ? null : secrets.seal(next, SEALED_PURPOSE.hostCredential),
          })
          .where('id', '=', host.id)
          .execute();
      }
      await runStatements(
        db,
        `
        ALTER TABLE host ALTER COLUMN credential_hash SET NOT NULL;
        ALTER TABLE host ALTER COLUMN credential_sealed SET NOT NULL;
        ALTER TABLE host DROP COLUMN credential;
        ALTER TABLE host DROP COLUMN next_credential;
        CREATE TABLE secret_key_check (
          id smallint PRIMARY KEY CHECK (id = 1),
          sealed text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE join_token ADD COLUMN replace_host text;
        ALTER TABLE audit ADD COLUMN remote_address text
      `,
      );
      await db
        .insertInto('secret_key_check')
        .values({ id: 1, sealed: secrets.seal(KEY_CHECK_TEXT, SEALED_PURPOSE.keyCheck) })
        .execute();
    },
  };
}
