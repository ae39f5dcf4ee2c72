import type { AuditEntry, AuditQuery } from '../../contracts/access-api.js';
import type { AuditRecord, AuditRepo } from '../ports/access-repos.js';

/** Reading the audit log (it is written by the access hook on every mutating call; nothing changes a row through the API). */
export class AuditLog {
  constructor(private readonly audit: AuditRepo) {}

  async query(query: AuditQuery): Promise<AuditEntry[]> {
    const records = await this.audit.query({
      resourceId: query.vm_id,
      actor: query.actor,
      since: query.since === undefined ? undefined : new Date(query.since),
      until: query.until === undefined ? undefined : new Date(query.until),
      limit: query.limit ?? 1000,
    });
    return records.map(toEntry);
  }
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
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  };
}
