import type { ExpressionBuilder, Kysely } from 'kysely';
import type { IdempotencyClaim, IdempotencyRepo } from '../../ports/idempotency-repo.js';
import type { Schema } from './schema.js';

export interface IdempotencyLimits {
  /**
   * A claim still in progress this long after it was made belongs to a request that will never
   * finish (its manager died mid-request): the next request with the key takes it over. Longer
   * than any request may run (the longest `?wait=` is 600 s).
   */
  abandonedAfterMs: number;
  /** A finished key is kept this long; after that the key is free again and its row is pruned. */
  keptForMs: number;
}

export const DEFAULT_IDEMPOTENCY_LIMITS: IdempotencyLimits = { abandonedAfterMs: 15 * 60_000, keptForMs: 24 * 3600_000 };

export class SqlIdempotencyRepo implements IdempotencyRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly limits: IdempotencyLimits = DEFAULT_IDEMPOTENCY_LIMITS,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async claim(key: string, requestHash: string): Promise<IdempotencyClaim> {
    const inserted = await this.db
      .insertInto('idempotency_key')
      .values({ key, request_hash: requestHash, status_code: null, response: null, updated_at: this.now() })
      .onConflict((conflict) => conflict.column('key').doNothing())
      .returning('key')
      .executeTakeFirst();
    if (inserted) return { kind: 'claimed' };
    if (await this.takeOverStale(key, requestHash)) return { kind: 'claimed' };
    const row = await this.db.selectFrom('idempotency_key').selectAll().where('key', '=', key).executeTakeFirst();
    if (!row) return this.claim(key, requestHash); // released between the two statements
    if (row.request_hash !== requestHash) return { kind: 'mismatch' };
    if (row.status_code === null) return { kind: 'in_progress' };
    return { kind: 'replay', statusCode: row.status_code, response: row.response };
  }

  /**
   * Claims a key whose claim was abandoned or whose answer has expired, in one statement, so of
   * several requests arriving together exactly one gets it.
   */
  private async takeOverStale(key: string, requestHash: string): Promise<boolean> {
    const taken = await this.db
      .updateTable('idempotency_key')
      .set({ request_hash: requestHash, status_code: null, response: null, updated_at: this.now() })
      .where('key', '=', key)
      .where((eb) => this.stale(eb))
      .returning('key')
      .executeTakeFirst();
    return taken !== undefined;
  }

  async complete(key: string, statusCode: number, response: unknown): Promise<void> {
    await this.db
      .updateTable('idempotency_key')
      .set({ status_code: statusCode, response: JSON.stringify(response), updated_at: this.now() })
      .where('key', '=', key)
      .execute();
  }

  async release(key: string): Promise<void> {
    await this.db.deleteFrom('idempotency_key').where('key', '=', key).where('status_code', 'is', null).execute();
  }

  async prune(): Promise<number> {
    const result = await this.db
      .deleteFrom('idempotency_key')
      .where((eb) => this.stale(eb))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** Rows whose claim was abandoned or whose answer has expired. */
  private stale(eb: ExpressionBuilder<Schema, 'idempotency_key'>) {
    const now = this.now().getTime();
    return eb.or([
      eb.and([eb('status_code', 'is', null), eb('updated_at', '<', new Date(now - this.limits.abandonedAfterMs))]),
      eb.and([eb('status_code', 'is not', null), eb('updated_at', '<', new Date(now - this.limits.keptForMs))]),
    ]);
  }
}
