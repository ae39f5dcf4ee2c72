import type { Kysely } from 'kysely';
import type { IdempotencyClaim, IdempotencyRepo } from '../../ports/idempotency-repo.js';
import type { Schema } from './schema.js';

export class SqlIdempotencyRepo implements IdempotencyRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async claim(key: string, requestHash: string): Promise<IdempotencyClaim> {
    const inserted = await this.db
      .insertInto('idempotency_key')
      .values({ key, request_hash: requestHash, status_code: null, response: null })
      .onConflict((conflict) => conflict.column('key').doNothing())
      .returning('key')
      .executeTakeFirst();
    if (inserted) return { kind: 'claimed' };
    const row = await this.db.selectFrom('idempotency_key').selectAll().where('key', '=', key).executeTakeFirst();
    if (!row) return this.claim(key, requestHash); // released between the two statements
    if (row.request_hash !== requestHash) return { kind: 'mismatch' };
    if (row.status_code === null) return { kind: 'in_progress' };
    return { kind: 'replay', statusCode: row.status_code, response: row.response };
  }

  async complete(key: string, statusCode: number, response: unknown): Promise<void> {
    await this.db
      .updateTable('idempotency_key')
      .set({ status_code: statusCode, response: JSON.stringify(response), updated_at: new Date() })
      .where('key', '=', key)
      .execute();
  }

  async release(key: string): Promise<void> {
    await this.db.deleteFrom('idempotency_key').where('key', '=', key).where('status_code', 'is', null).execute();
  }
}
