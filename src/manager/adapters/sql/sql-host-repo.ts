import { type Kysely, type Selectable, sql } from 'kysely';
import type { HostCapacity } from '../../../contracts/agent-api.js';
import type { HostStatus } from '../../../contracts/host-api.js';
import type { SecretBox } from '../../../kit/secret-box.js';
import { hashSecret } from '../../../kit/secret.js';
import type { EnrollOutcome, HostRecord, HostRepo, LateHost, NewHost, NextCredential } from '../../ports/host-repo.js';
import { SEALED_PURPOSE } from './sealed-purposes.js';
import type { HostTable, Schema } from './schema.js';

/**
 * Hosts and join tokens. No secret is stored in the clear: join tokens as their SHA-256, host
 * credentials as their SHA-256 (to check heartbeats) and sealed under the manager's key (the copy
 * it presents to the agent). Credentials are sealed here and never opened: records carry them
 * sealed, for the agent gateway to open as it calls the host.
 */
export class SqlHostRepo implements HostRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly secrets: SecretBox,
  ) {}

  async createJoinToken(tokenHash: string, expiresAt: Date, replaceHost: string | null = null): Promise<{ id: string }> {
    return this.db
      .insertInto('join_token')
      .values({ token_hash: tokenHash, expires_at: expiresAt, replace_host: replaceHost })
      .returning('id')
      .executeTakeFirstOrThrow();
  }

  async existsNamed(name: string): Promise<boolean> {
    return (await this.db.selectFrom('host').select('id').where('name', '=', name).executeTakeFirst()) !== undefined;
  }

  async enroll(tokenHash: string, host: NewHost, now: Date): Promise<EnrollOutcome> {
    return this.db.transaction().execute(async (trx) => {
      // The row lock makes a racing second enrollment wait, then see used_at set.
      const token = await trx
        .selectFrom('join_token')
        .select(['id', 'expires_at', 'used_at', 'replace_host'])
        .where('token_hash', '=', tokenHash)
        .forUpdate()
        .executeTakeFirst();
      if (!token) return { ok: false, reason: 'unknown' } as const;
      if (token.used_at) return { ok: false, reason: 'used', tokenId: token.id } as const;
      if (token.expires_at <= now) return { ok: false, reason: 'expired', tokenId: token.id } as const;
      if (token.replace_host !== null && token.replace_host !== host.name) {
        return { ok: false, reason: 'wrong_host', tokenId: token.id, replaceHost: token.replace_host } as const;
      }

      // Locked, so a liveness sweep or a heartbeat cannot change its status under this decision.
      const existing = await trx.selectFrom('host').selectAll().where('name', '=', host.name).forUpdate().executeTakeFirst();
      if (existing?.status === 'ready' && token.replace_host !== host.name) {
        return { ok: false, reason: 'host_ready', tokenId: token.id, host: toRecord(existing) } as const;
      }
      const values = {
        address: host.address,
        capacity: JSON.stringify(host.capacity),
        credential_hash: hashSecret(host.credential),
        credential_sealed: this.secrets.seal(host.credential, SEALED_PURPOSE.hostCredential),
        next_credential_hash: null,
        next_credential_sealed: null,
        status: 'ready' as const,
        last_seen_at: now,
        updated_at: now,
      };
      const row = existing
        ? await trx.updateTable('host').set(values).where('id', '=', existing.id).returningAll().executeTakeFirstOrThrow()
        : await trx
            .insertInto('host')
            .values({ ...values, name: host.name })
            .returningAll()
            .executeTakeFirstOrThrow();
      await trx.updateTable('join_token').set({ used_at: now, used_by_host_id: row.id, updated_at: now }).where('id', '=', token.id).execute();
      const kind = !existing ? 'enrolled' : existing.status === 'ready' ? 'replaced' : 'reenrolled';
      return { ok: true, host: toRecord(row), tokenId: token.id, kind } as const;
    });
  }

  async list(): Promise<HostRecord[]> {
    const rows = await this.db.selectFrom('host').selectAll().orderBy('name').execute();
    return rows.map((row) => toRecord(row));
  }

  async get(id: string): Promise<HostRecord | undefined> {
    const row = await this.db.selectFrom('host').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async recordHeartbeat(id: string, address: string, capacity: HostCapacity, now: Date): Promise<HostStatus | undefined> {
    // The row is locked before it is read, so exactly one beat sees a host come back (and says so).
    const row = await this.db
      .with('before', (db) => db.selectFrom('host').select(['id', 'status']).where('id', '=', id).forUpdate())
      .updateTable('host')
      .from('before')
      .set({ address, capacity: JSON.stringify(capacity), status: 'ready', last_seen_at: now, updated_at: now })
      .whereRef('host.id', '=', 'before.id')
      .returning(sql<HostStatus>`before.status`.as('was'))
      .executeTakeFirst();
    return row?.was;
  }

  async markLateHostsUnreachable(seenBefore: Date, now: Date): Promise<LateHost[]> {
    const rows = await this.db
      .updateTable('host')
      .set({ status: 'unreachable', updated_at: now })
      .where('status', '=', 'ready')
      .where('last_seen_at', '<', seenBefore)
      .returning(['id', 'name', 'last_seen_at'])
      .execute();
    return rows.map((row) => ({ id: row.id, name: row.name, lastSeenAt: row.last_seen_at }));
  }

  async beginCredentialRotation(id: string, next: string): Promise<NextCredential | undefined> {
    // Both columns are set together or kept together: a rotation under way keeps its credential.
    const row = await this.db
      .updateTable('host')
      .set((eb) => ({
        next_credential_hash: eb.fn.coalesce('next_credential_hash', eb.val(hashSecret(next))),
        next_credential_sealed: eb.fn.coalesce('next_credential_sealed', eb.val(this.secrets.seal(next, SEALED_PURPOSE.hostCredential))),
      }))
      .where('id', '=', id)
      .returning(['next_credential_sealed', 'next_credential_hash'])
      .executeTakeFirst();
    return row?.next_credential_sealed && row.next_credential_hash ? { sealed: row.next_credential_sealed, hash: row.next_credential_hash } : undefined;
  }

  async completeCredentialRotation(id: string, nextHash: string, now: Date): Promise<boolean> {
    const result = await this.db
      .updateTable('host')
      .set((eb) => ({
        credential_hash: eb.ref('next_credential_hash').$notNull(),
        credential_sealed: eb.ref('next_credential_sealed').$notNull(),
        next_credential_hash: null,
        next_credential_sealed: null,
        credential_rotated_at: now,
        updated_at: now,
      }))
      .where('id', '=', id)
      .where('next_credential_hash', '=', nextHash)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async countReady(): Promise<number> {
    const row = await this.db
      .selectFrom('host')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('status', '=', 'ready')
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}

function toRecord(row: Selectable<HostTable>): HostRecord {
  return {
    id: row.id,
    name: row.name,
    address: row.address,
    status: row.status,
    capacity: row.capacity,
    credentialSealed: row.credential_sealed,
    credentialHash: row.credential_hash,
    nextCredentialHash: row.next_credential_hash,
    credentialRotatedAt: row.credential_rotated_at,
    lastSeenAt: row.last_seen_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
