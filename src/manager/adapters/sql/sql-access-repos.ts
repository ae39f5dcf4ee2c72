import { type Kysely, type Selectable, sql } from 'kysely';
import { NexusError } from '../../../kit/nexus-error.js';
import type { ProjectQuota } from '../../domain/access-policy.js';
import type {
  AuditEvent,
  AuditFilter,
  AuditFinish,
  AuditRecord,
  AuditRepo,
  AuditStart,
  NewToken,
  ProjectRecord,
  ProjectRepo,
  TokenRecord,
  TokenRepo,
} from '../../ports/access-repos.js';
import type { ApiTokenTable, AuditTable, ProjectTable, Schema } from './schema.js';

export class SqlTokenRepo implements TokenRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom('api_token')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async create(token: NewToken): Promise<TokenRecord> {
    let projectId: string | null = null;
    if (token.project !== null) {
      const project = await this.db.selectFrom('project').select('id').where('name', '=', token.project).executeTakeFirst();
      if (!project) throw new NexusError('not_found', `no project ${token.project}`, { suggestion: 'POST /v1/projects creates it.' });
      projectId = project.id;
    }
    const { id } = await this.db
      .insertInto('api_token')
      .values({
        project_id: projectId,
        owner: token.owner,
        role: token.role,
        secret_hash: token.secretHash,
        expires_at: token.expiresAt,
        previous_secret_hash: null,
        previous_valid_until: null,
        revoked_at: null,
        last_used_at: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return (await this.get(id)) as TokenRecord;
  }

  async get(id: string): Promise<TokenRecord | undefined> {
    const row = await this.select().where('api_token.id', '=', id).executeTakeFirst();
    return row && toToken(row);
  }

  async list(): Promise<TokenRecord[]> {
    return (await this.select().orderBy('api_token.created_at').execute()).map(toToken);
  }

  async rotate(id: string, secretHash: string, previousValidUntil: Date | null): Promise<TokenRecord | undefined> {
    const result = await this.db
      .updateTable('api_token')
      .set({
        previous_secret_hash: previousValidUntil ? sql<string>`secret_hash` : null,
        previous_valid_until: previousValidUntil,
        secret_hash: secretHash,
        updated_at: new Date(),
      })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows === 0n ? undefined : this.get(id);
  }

  async revoke(id: string, now: Date): Promise<TokenRecord | undefined> {
    await this.db.updateTable('api_token').set({ revoked_at: now, updated_at: now }).where('id', '=', id).where('revoked_at', 'is', null).execute();
    return this.get(id);
  }

  async touch(id: string, now: Date): Promise<void> {
    await this.db.updateTable('api_token').set({ last_used_at: now }).where('id', '=', id).execute();
  }

  private select() {
    return this.db.selectFrom('api_token').leftJoin('project', 'project.id', 'api_token.project_id').selectAll('api_token').select('project.name as project');
  }
}

function toToken(row: Selectable<ApiTokenTable> & { project: string | null }): TokenRecord {
  return {
    id: row.id,
    project: row.project,
    owner: row.owner,
    role: row.role,
    secretHash: row.secret_hash,
    previousSecretHash: row.previous_secret_hash,
    previousValidUntil: row.previous_valid_until,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
  };
}

export class SqlProjectRepo implements ProjectRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async list(): Promise<ProjectRecord[]> {
    return (await this.db.selectFrom('project').selectAll().orderBy('name').execute()).map(toProject);
  }

  async get(name: string): Promise<ProjectRecord | undefined> {
    const row = await this.db.selectFrom('project').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toProject(row);
  }

  async create(name: string, quota: ProjectQuota): Promise<ProjectRecord> {
    try {
      const row = await this.db
        .insertInto('project')
        .values({ name, max_vms: quota.maxVms, max_vcpus: quota.maxVcpus, max_memory_mib: quota.maxMemoryMib })
        .returningAll()
        .executeTakeFirstOrThrow();
      return toProject(row);
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new NexusError('conflict', `a project named ${name} exists`);
      throw error;
    }
  }

  async setQuota(name: string, quota: Partial<ProjectQuota>): Promise<ProjectRecord | undefined> {
    const row = await this.db
      .updateTable('project')
      .set({
        ...(quota.maxVms !== undefined ? { max_vms: quota.maxVms } : {}),
        ...(quota.maxVcpus !== undefined ? { max_vcpus: quota.maxVcpus } : {}),
        ...(quota.maxMemoryMib !== undefined ? { max_memory_mib: quota.maxMemoryMib } : {}),
        updated_at: new Date(),
      })
      .where('name', '=', name)
      .returningAll()
      .executeTakeFirst();
    return row && toProject(row);
  }
}

function toProject(row: Selectable<ProjectTable>): ProjectRecord {
  return { name: row.name, maxVms: row.max_vms, maxVcpus: row.max_vcpus, maxMemoryMib: row.max_memory_mib, createdAt: row.created_at };
}

export class SqlAuditRepo implements AuditRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async begin(entry: AuditStart): Promise<string> {
    const { id } = await this.db
      .insertInto('audit')
      .values({
        actor: entry.actor,
        action: entry.action,
        resource: entry.resource,
        resource_id: entry.resourceId,
        request_id: entry.requestId,
        result: 'pending',
        status: null,
        before: entry.before === undefined ? null : JSON.stringify(entry.before),
        after: null,
        detail: null,
        remote_address: entry.remoteAddress,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return id;
  }

  async record(event: AuditEvent): Promise<void> {
    await this.db
      .insertInto('audit')
      .values({
        actor: event.actor,
        action: event.action,
        resource: event.resource,
        resource_id: event.resourceId,
        request_id: event.requestId,
        result: event.result,
        status: event.status,
        before: event.before === undefined ? null : JSON.stringify(event.before),
        after: event.after === undefined ? null : JSON.stringify(event.after),
        detail: event.detail,
        remote_address: event.remoteAddress,
      })
      .execute();
  }

  async finish(id: string, outcome: AuditFinish): Promise<void> {
    await this.db
      .updateTable('audit')
      .set({
        result: outcome.result,
        status: outcome.status,
        resource_id: sql`coalesce(resource_id, ${outcome.resourceId})`,
        after: outcome.after === undefined ? null : JSON.stringify(outcome.after),
        detail: outcome.detail,
        updated_at: new Date(),
      })
      .where('id', '=', id)
      .execute();
  }

  async query(filter: AuditFilter): Promise<AuditRecord[]> {
    const direction = filter.order === 'newest' ? 'desc' : 'asc';
    let query = this.db
      .selectFrom('audit')
      .selectAll()
      // The exact time, as text: the cursor must not round it to the millisecond of a Date.
      .select(sql<string>`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('position_at'))
      .orderBy('created_at', direction)
      .orderBy('id', direction)
      .limit(filter.limit);
    if (filter.resourceId) query = query.where('resource_id', '=', filter.resourceId);
    if (filter.actor) query = query.where('actor', '=', filter.actor);
    if (filter.since) query = query.where('created_at', '>=', filter.since);
    if (filter.until) query = query.where('created_at', '<', filter.until);
    if (filter.from) {
      const from = sql`(${filter.from.at}::timestamptz, ${filter.from.id}::uuid)`;
      query = query.where(filter.order === 'newest' ? sql<boolean>`(created_at, id) < ${from}` : sql<boolean>`(created_at, id) > ${from}`);
    }
    return (await query.execute()).map(toAudit);
  }
}

function toAudit(row: Selectable<AuditTable> & { position_at: string }): AuditRecord {
  return {
    position: { at: row.position_at, id: row.id },
    id: row.id,
    actor: row.actor,
    action: row.action,
    resource: row.resource,
    resourceId: row.resource_id,
    requestId: row.request_id,
    result: row.result,
    status: row.status,
    before: row.before,
    after: row.after,
    detail: row.detail,
    remoteAddress: row.remote_address,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
