/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import { type Kysely, type Migration, Migrator } from 'kysely';
import * as core from './migrations/0001-core.js';
import * as idempotency from './migrations/0002-idempotency.js';
import * as imageRegistry from './migrations/0003-image-registry.js';
import * as access from './migrations/0004-access.js';
import * as hostCredentialRotation from './migrations/0005-host-credential-rotation.js';

/** Every migration, in order. Names are the version: never rename or edit one that has shipped. */
const MIGRATIONS: Record<string, Migration> = {
  '0001-core': core,
  '0002-idempotency': idempotency,
  '0003-image-registry': imageRegistry,
  '0004-access': access,
  '0005-host-credential-rotation': hostCredentialRotation,
};

/** The names of every migration, oldest first. */
export const MIGRATION_NAMES: readonly string[] = Object.keys(MIGRATIONS);

export interface MigrationReport {
  applied: string[];
}

/**
 * Brings the schema to the latest version. Safe to run from several managers at once: Kysely
 * serializes migrators with a Postgres advisory lock.
 */
export async function migrateToLatest(db: Kysely<any>): Promise<MigrationReport> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((result) => result.status === 'Error');
  if (error || failed) {
    const name = failed?.migrationName ?? 'unknown';
    throw new Error(`migration ${name} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return { applied: (results ?? []).map((result) => result.migrationName) };
}
