import type { AuditEntry, AuditQuery } from '../../contracts/access-api.js';
import { UUID_PATTERN } from '../../contracts/schema.js';
import { NexusError } from '../../kit/nexus-error.js';
import { decodeCursor, encodeCursor } from '../../kit/page-cursor.js';
import { isStorableTimestamp, parseTimestamp } from '../../kit/timestamp.js';
import type { AuditFilter, AuditPosition, AuditRecord, AuditRepo } from '../ports/access-repos.js';

/** Entries on a page when the caller gives no limit. */
const DEFAULT_PAGE = 1000;
/** Rows an export reads at a time: it holds no more than this many in memory. */
const EXPORT_BATCH = 1000;

/**
 * Reading the audit log (it is written by the access hook on every mutating call; nothing changes
 * a row through the API): pages newest first, for people asking what just happened, and an
 * export of every row, oldest first, for keeping the log elsewhere.
 */
export class AuditLog {
  constructor(
    private readonly audit: AuditRepo,
    private readonly exportBatch = EXPORT_BATCH,
  ) {}

  /** One page, newest first; `next_cursor` goes on to older entries, null on the last page. */
  async page(query: AuditQuery): Promise<{ items: AuditEntry[]; next_cursor: string | null }> {
    const limit = query.limit ?? DEFAULT_PAGE;
    const from = query.cursor === undefined ? undefined : positionOf(query.cursor);
    const records = await this.audit.query({ ...filterOf(query), order: 'newest', from, limit });
    const last = records.at(-1);
    return { items: records.map(toEntry), next_cursor: records.length === limit && last ? encodeCursor([last.position.at, last.position.id]) : null };
  }

  /**
   * Every entry the filters match, oldest first, read a batch at a time. The first batch is read
   * before this answers, so a failing database is an error answer rather than a cut-off export.
   */
  async export(query: AuditQuery): Promise<AsyncIterable<AuditEntry>> {
    if (query.limit !== undefined || query.cursor !== undefined) {
      throw new NexusError(
        'validation_failed',
        `${query.limit !== undefined ? 'limit' : 'cursor'} pages format=json; format=ndjson exports every entry the filters match`,
        {
          suggestion: 'Leave limit and cursor out of an export, and narrow it with since, until, actor or vm_id.',
        },
      );
    }
    const filter = filterOf(query);
    const first = await this.audit.query({ ...filter, order: 'oldest', limit: this.exportBatch });
    return this.rest(filter, first);
  }

  private async *rest(filter: Omit<AuditFilter, 'order' | 'limit'>, first: AuditRecord[]): AsyncGenerator<AuditEntry> {
    let batch = first;
    for (;;) {
      for (const record of batch) yield toEntry(record);
      const last = batch.at(-1);
      if (batch.length < this.exportBatch || !last) return;
      batch = await this.audit.query({ ...filter, order: 'oldest', from: last.position, limit: this.exportBatch });
    }
  }
}

function filterOf(query: AuditQuery): Omit<AuditFilter, 'order' | 'limit'> {
  return {
    resourceId: query.vm_id,
    actor: query.actor,
    since: query.since === undefined ? undefined : parseTimestamp(query.since, 'since'),
    until: query.until === undefined ? undefined : parseTimestamp(query.until, 'until'),
  };
}

/** A position as the store gives it out: the row's time to the microsecond, and its id. */
const POSITION_FIELDS = [(at: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(at) && isStorableTimestamp(at), (id: string) => UUID_PATTERN.test(id)];

function positionOf(cursor: string): AuditPosition {
  const [at = '', id = ''] = decodeCursor(cursor, POSITION_FIELDS);
  return { at, id };
}

function toEntry(record: AuditRecord): AuditEntry {
  return {
    id: record.id,
    actor: record.actor,
    action: record.action,
    resource: record.resource,
    resource_id: record.resourceId,
    request_id: record.requestId,
    result: record.result,
    status: record.status,
    before: record.before ?? null,
    after: record.after ?? null,
    detail: record.detail,
    remote_address: record.remoteAddress,
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  };
}
