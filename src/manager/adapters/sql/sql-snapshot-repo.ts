import { type Kysely, type Selectable, sql } from 'kysely';
import type { SnapshotFile } from '../../../contracts/snapshot-api.js';
import { NexusError } from '../../../kit/nexus-error.js';
import type { NewSnapshot, SnapshotRecord, SnapshotRepo, SnapshotSource, TakenSnapshot } from '../../ports/snapshot-repo.js';
import type { Schema, SnapshotTable } from './schema.js';

type SnapshotRow = Selectable<SnapshotTable> & { project: string };

export class SqlSnapshotRepo implements SnapshotRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async create(snapshot: NewSnapshot): Promise<SnapshotRecord> {
    const project = await this.db.selectFrom('project').select('id').where('name', '=', snapshot.project).executeTakeFirst();
    if (!project) throw new NexusError('not_found', `no project ${snapshot.project}`);
    try {
      await this.db
        .insertInto('snapshot')
        .values({
          id: snapshot.id,
          project_id: project.id,
          name: snapshot.name,
          vm_id: snapshot.vmId,
          vm_name: snapshot.vmName,
          host_id: snapshot.hostId,
          status: 'creating',
          vcpu: snapshot.vcpu,
          mem_mib: snapshot.memMib,
          source: JSON.stringify(snapshot.source),
        })
        .execute();
    } catch (error) {
      if ((error as { code?: string }).code === '23505') {
        throw new NexusError('conflict', `a snapshot named ${snapshot.name} already exists in project ${snapshot.project}`, {
          suggestion: 'Choose another name, or delete that snapshot first.',
        });
      }
      throw error;
    }
    return this.require(snapshot.id);
  }

  async get(id: string): Promise<SnapshotRecord | undefined> {
    const row = await this.select().where('snapshot.id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async list(filter: { projects?: string[]; vmId?: string }): Promise<SnapshotRecord[]> {
    let query = this.select().orderBy('snapshot.created_at', 'desc').orderBy('snapshot.id');
    if (filter.projects) query = filter.projects.length > 0 ? query.where('project.name', 'in', filter.projects) : query.where(sql<boolean>`false`);
    if (filter.vmId) query = query.where('snapshot.vm_id', '=', filter.vmId);
    return (await query.execute()).map(toRecord);
  }

  async markReady(id: string, taken: TakenSnapshot): Promise<SnapshotRecord | undefined> {
    const written = await this.db
      .updateTable('snapshot')
      .set({ status: 'ready', driver: taken.driver, size_bytes: taken.sizeBytes, files: JSON.stringify(taken.files), updated_at: new Date() })
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(written.numUpdatedRows) > 0 ? this.get(id) : undefined;
  }

  async delete(id: string): Promise<boolean> {
    const deleted = await this.db.deleteFrom('snapshot').where('id', '=', id).executeTakeFirst();
    return Number(deleted.numDeletedRows) > 0;
  }

  async deleteOfVm(vmId: string): Promise<Array<{ id: string; hostId: string }>> {
    const rows = await this.db.deleteFrom('snapshot').where('vm_id', '=', vmId).returning(['id', 'host_id']).execute();
    return rows.map((row) => ({ id: row.id, hostId: row.host_id }));
  }

  async ids(): Promise<string[]> {
    return (await this.db.selectFrom('snapshot').select('id').execute()).map((row) => row.id);
  }

  private async require(id: string): Promise<SnapshotRecord> {
    const found = await this.get(id);
    if (!found) throw new Error(`snapshot ${id} vanished as it was inserted`);
    return found;
  }

  private select() {
    return this.db.selectFrom('snapshot').innerJoin('project', 'project.id', 'snapshot.project_id').selectAll('snapshot').select('project.name as project');
  }
}

function toRecord(row: SnapshotRow): SnapshotRecord {
  return {
    id: row.id,
    projectId: row.project_id,
    project: row.project,
    name: row.name,
    vmId: row.vm_id,
    vmName: row.vm_name,
    hostId: row.host_id,
    status: row.status,
    driver: row.driver,
    vcpu: row.vcpu,
    memMib: row.mem_mib,
    sizeBytes: Number(row.size_bytes),
    files: row.files as SnapshotFile[],
    source: row.source as SnapshotSource,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
