import { type Kysely, type Selectable, sql } from 'kysely';
import type { DesiredState } from '../../../contracts/vm-api.js';
import { NexusError } from '../../../kit/nexus-error.js';
import type { HostAllocation, NewVm, Observation, StoredVmSpec, VmEventRecord, VmFilter, VmRecord, VmRepo } from '../../ports/vm-repo.js';
import type { Schema, VmTable } from './schema.js';

type VmRow = Selectable<VmTable> & { project: string };

export class SqlVmRepo implements VmRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async create(vm: NewVm): Promise<VmRecord> {
    const project = await this.db.selectFrom('project').select('id').where('name', '=', vm.project).executeTakeFirst();
    if (!project) throw new NexusError('not_found', `no project ${vm.project}`);
    try {
      const { id } = await this.db
        .insertInto('vm')
        .values({
          project_id: project.id,
          name: vm.name,
          spec: JSON.stringify(vm.spec),
          desired_state: vm.desiredState,
          observed_state: 'requested',
          tags: JSON.stringify(vm.tags),
          host_id: null,
          last_error: null,
          expires_at: vm.expiresAt,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      return (await this.get(id)) as VmRecord;
    } catch (error) {
      if ((error as { code?: string }).code === '23505') {
        throw new NexusError('conflict', `a VM named ${vm.name} already exists in project ${vm.project}`, {
          suggestion: 'Choose another name, or delete the other VM first.',
        });
      }
      throw error;
    }
  }

  async get(id: string): Promise<VmRecord | undefined> {
    const row = await this.selectVms().where('vm.id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async list(filter: VmFilter): Promise<VmRecord[]> {
    let query = this.selectVms().orderBy('vm.name').limit(filter.limit);
    if (filter.state) query = query.where('vm.observed_state', '=', filter.state);
    if (filter.hostId) query = query.where('vm.host_id', '=', filter.hostId);
    if (filter.namePrefix) query = query.where('vm.name', 'like', `${filter.namePrefix.replace(/[\\%_]/g, '\\$&')}%`);
    if (filter.afterName !== undefined) query = query.where('vm.name', '>', filter.afterName);
    return (await query.execute()).map(toRecord);
  }

  async ids(): Promise<string[]> {
    return (await this.db.selectFrom('vm').select('id').execute()).map((row) => row.id);
  }

  async setDesired(id: string, desired: DesiredState, expectedVersion?: number): Promise<VmRecord | 'stale' | undefined> {
    let update = this.db
      .updateTable('vm')
      .set({ desired_state: desired, updated_at: new Date(), resource_version: sql<number>`resource_version + 1` })
      .where('id', '=', id);
    if (expectedVersion !== undefined) update = update.where('resource_version', '=', expectedVersion);
    const result = await update.executeTakeFirst();
    if (result.numUpdatedRows === 0n) {
      const exists = await this.db.selectFrom('vm').select('id').where('id', '=', id).executeTakeFirst();
      return exists ? 'stale' : undefined;
    }
    return this.get(id);
  }

  async setHost(id: string, hostId: string, spec?: StoredVmSpec): Promise<void> {
    await this.db
      .updateTable('vm')
      .set({ host_id: hostId, updated_at: new Date(), ...(spec ? { spec: JSON.stringify(spec) } : {}) })
      .where('id', '=', id)
      .execute();
  }

  async observe(id: string, observation: Observation): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const current = await trx.selectFrom('vm').select(['observed_state']).where('id', '=', id).forUpdate().executeTakeFirst();
      if (!current) return;
      const changed = current.observed_state !== observation.to;
      if (!changed && observation.lastError === undefined) return;
      await trx
        .updateTable('vm')
        .set({
          // The resource version follows the user's writes only: the reconciler's never make an If-Match fail.
          observed_state: observation.to,
          updated_at: new Date(),
          ...(observation.lastError !== undefined ? { last_error: observation.lastError && JSON.stringify(observation.lastError) } : {}),
        })
        .where('id', '=', id)
        .execute();
      if (changed || observation.lastError) {
        await trx
          .insertInto('vm_event')
          .values({
            vm_id: id,
            level: observation.level ?? (observation.lastError ? 'error' : 'info'),
            kind: changed ? 'state_changed' : 'error',
            from_state: current.observed_state,
            to_state: observation.to,
            message: observation.message,
            data: null,
          })
          .execute();
      }
    });
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('vm').where('id', '=', id).execute();
  }

  async events(id: string): Promise<VmEventRecord[]> {
    const rows = await this.db.selectFrom('vm_event').selectAll().where('vm_id', '=', id).orderBy('created_at').orderBy('id').execute();
    return rows.map((row) => ({
      id: row.id,
      level: row.level,
      kind: row.kind,
      fromState: row.from_state,
      toState: row.to_state,
      message: row.message,
      createdAt: row.created_at,
    }));
  }

  async allocations(): Promise<HostAllocation[]> {
    const rows = await this.db
      .selectFrom('vm')
      .select((eb) => [
        'host_id',
        eb.fn.sum<number>(sql`(spec->>'vcpu')::int`).as('vcpus'),
        eb.fn.sum<number>(sql`(spec->>'mem_mib')::int`).as('memory_mib'),
      ])
      .where('host_id', 'is not', null)
      .groupBy('host_id')
      .execute();
    return rows.map((row) => ({ hostId: row.host_id as string, vcpus: Number(row.vcpus), memoryMib: Number(row.memory_mib) }));
  }

  private selectVms() {
    return this.db.selectFrom('vm').innerJoin('project', 'project.id', 'vm.project_id').selectAll('vm').select('project.name as project');
  }
}

function toRecord(row: VmRow): VmRecord {
  return {
    id: row.id,
    projectId: row.project_id,
    project: row.project,
    name: row.name,
    hostId: row.host_id,
    spec: row.spec,
    desiredState: row.desired_state,
    observedState: row.observed_state,
    lastError: row.last_error,
    tags: row.tags,
    expiresAt: row.expires_at,
    resourceVersion: Number(row.resource_version),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
