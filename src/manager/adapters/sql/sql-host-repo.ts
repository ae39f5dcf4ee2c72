import type { Kysely, Selectable } from 'kysely';
import type { HostCapacity } from '../../../contracts/agent-api.js';
import type { EnrollOutcome, HostRecord, HostRepo, NewHost } from '../../ports/host-repo.js';
import type { HostTable, Schema } from './schema.js';

export class SqlHostRepo implements HostRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async createJoinToken(tokenHash: string, expiresAt: Date): Promise<{ id: string }> {
    return this.db
      .insertInto('join_token')
      .values({ token_hash: tokenHash, expires_at: expiresAt })
      .returning('id')
      .executeTakeFirstOrThrow();
  }

  async enroll(tokenHash: string, host: NewHost, now: Date): Promise<EnrollOutcome> {
    return this.db.transaction().execute(async (trx) => {
      // The row lock makes a racing second enrollment wait, then see used_at set.
      const token = await trx
        .selectFrom('join_token')
        .select(['id', 'expires_at', 'used_at'])
        .where('token_hash', '=', tokenHash)
        .forUpdate()
        .executeTakeFirst();
      if (!token) return { ok: false, reason: 'unknown' } as const;
      if (token.used_at) return { ok: false, reason: 'used', tokenId: token.id } as const;
      if (token.expires_at <= now) return { ok: false, reason: 'expired', tokenId: token.id } as const;

      const existing = await trx.selectFrom('host').select('id').where('name', '=', host.name).executeTakeFirst();
      const values = {
        address: host.address,
        capacity: JSON.stringify(host.capacity),
        credential: host.credential,
        next_credential: null,
        status: 'ready' as const,
        last_seen_at: now,
        updated_at: now,
      };
      const row = existing
        ? await trx.updateTable('host').set(values).where('id', '=', existing.id).returningAll().executeTakeFirstOrThrow()
        : await trx.insertInto('host').values({ ...values, name: host.name }).returningAll().executeTakeFirstOrThrow();
      await trx
        .updateTable('join_token')
        .set({ used_at: now, used_by_host_id: row.id, updated_at: now })
        .where('id', '=', token.id)
        .execute();
      return { ok: true, host: toRecord(row), reenrolled: existing !== undefined } as const;
    });
  }

  async list(): Promise<HostRecord[]> {
    const rows = await this.db.selectFrom('host').selectAll().orderBy('name').execute();
    return rows.map(toRecord);
  }

  async get(id: string): Promise<HostRecord | undefined> {
    const row = await this.db.selectFrom('host').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async recordHeartbeat(id: string, address: string, capacity: HostCapacity, now: Date): Promise<void> {
    await this.db
      .updateTable('host')
      .set({ address, capacity: JSON.stringify(capacity), status: 'ready', last_seen_at: now, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async markLateHostsUnreachable(seenBefore: Date, now: Date): Promise<string[]> {
    const rows = await this.db
      .updateTable('host')
      .set({ status: 'unreachable', updated_at: now })
      .where('status', '=', 'ready')
      .where('last_seen_at', '<', seenBefore)
      .returning('name')
      .execute();
    return rows.map((row) => row.name);
  }

  async beginCredentialRotation(id: string, next: string): Promise<string | undefined> {
    const row = await this.db
      .updateTable('host')
      .set((eb) => ({ next_credential: eb.fn.coalesce('next_credential', eb.val(next)) }))
      .where('id', '=', id)
      .returning('next_credential')
      .executeTakeFirst();
    return row?.next_credential ?? undefined;
  }

  async completeCredentialRotation(id: string, next: string, now: Date): Promise<boolean> {
    const result = await this.db
      .updateTable('host')
      .set({ credential: next, next_credential: null, credential_rotated_at: now, updated_at: now })
      .where('id', '=', id)
      .where('next_credential', '=', next)
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
    credential: row.credential,
    nextCredential: row.next_credential,
    credentialRotatedAt: row.credential_rotated_at,
    lastSeenAt: row.last_seen_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
