/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import { type Kysely, type Migration, type MigrationResultSet, Migrator } from 'kysely';
import * as core from './migrations/0001-core.js';
import * as idempotency from './migrations/0002-idempotency.js';
import * as imageRegistry from './migrations/0003-image-registry.js';
import * as access from './migrations/0004-access.js';
import * as hostCredentialRotation from './migrations/0005-host-credential-rotation.js';
import * as adminTokenScope from './migrations/0006-admin-token-scope.js';
import { sealedCredentialsAndHostAudit } from './migrations/0007-sealed-credentials-and-host-audit.js';
import * as auditPagingIndex from './migrations/0008-audit-paging-index.js';
import * as vmStatus from './migrations/0009-vm-status.js';
import * as networks from './migrations/0010-networks.js';
import * as vmPorts from './migrations/0011-vm-ports.js';
import * as snapshots from './migrations/0012-snapshots.js';
import * as hibernated from './migrations/0013-hibernated.js';
import type { SecretBox } from '../../../kit/secret-box.js';

/** What some migrations need besides the database: the key that seals secrets at rest. */
export interface MigrationContext {
  secrets: SecretBox;
}

/** Every migration, in order. Names are the version: never rename or edit one that has shipped. */
function migrations(context: MigrationContext): Record<string, Migration> {
  return {
    '0001-core': core,
    '0002-idempotency': idempotency,
    '0003-image-registry': imageRegistry,
    '0004-access': access,
    '0005-host-credential-rotation': hostCredentialRotation,
    '0006-admin-token-scope': adminTokenScope,
    '0007-sealed-credentials-and-host-audit': sealedCredentialsAndHostAudit(context.secrets),
    '0008-audit-paging-index': auditPagingIndex,
    '0009-vm-status': vmStatus,
    '0010-networks': networks,
    '0011-vm-ports': vmPorts,
    '0012-snapshots': snapshots,
    '0013-hibernated': hibernated,
  };
}

/** The names of every migration, oldest first (listing them needs no key: none runs). */
export const MIGRATION_NAMES: readonly string[] = Object.keys(migrations({ secrets: undefined as unknown as SecretBox }));

export interface MigrationReport {
  applied: string[];
}

/**
 * Brings the schema to the latest version. Safe to run from several managers at once: Kysely
 * serializes migrators with a Postgres advisory lock.
 */
export async function migrateToLatest(db: Kysely<any>, context: MigrationContext): Promise<MigrationReport> {
  return migrate(db, context, (migrator) => migrator.migrateToLatest());
}

/** Brings the schema to exactly the migration `name` (an upgrade test starts from an older schema this way). */
export async function migrateTo(db: Kysely<any>, context: MigrationContext, name: string): Promise<MigrationReport> {
  return migrate(db, context, (migrator) => migrator.migrateTo(name));
}

async function migrate(db: Kysely<any>, context: MigrationContext, run: (migrator: Migrator) => Promise<MigrationResultSet>): Promise<MigrationReport> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations(context) } });
  const { error, results } = await run(migrator);
  const failed = results?.find((result) => result.status === 'Error');
  if (error || failed) {
    const name = failed?.migrationName ?? 'unknown';
    throw new Error(`migration ${name} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return { applied: (results ?? []).map((result) => result.migrationName) };
}
