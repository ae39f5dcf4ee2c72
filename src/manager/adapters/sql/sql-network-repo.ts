import { type Kysely, sql } from 'kysely';
import type { Egress } from '../../../contracts/network-api.js';
import { formatIpv4Block } from '../../../kit/ipv4.js';
import { NexusError } from '../../../kit/nexus-error.js';
import { checkNetworkCidr, freeBlockIn, networkBlockOf, overlapping } from '../../domain/network-rules.js';
import { DEFAULT_NETWORK, type DefaultNetworkPool, type NetworkRecord, type NetworkRepo, type NewNetwork } from '../../ports/network-repo.js';
import type { Schema } from './schema.js';

interface NetworkRow {
  id: string;
  project_id: string;
  project: string;
  name: string;
  cidr: string;
  egress: Egress;
  dns: string[];
  vm_count: number | string;
  resource_version: number | string;
  created_at: Date;
  updated_at: Date;
}

export class SqlNetworkRepo implements NetworkRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async create(network: NewNetwork): Promise<NetworkRecord> {
    return this.db.transaction().execute(async (trx) => {
      const project = await projectIdOf(trx, network.project);
      await lockNetworks(trx);
      const block = checkNetworkCidr(network.cidr);
      const clash = overlapping(block, await blocksOf(trx));
      if (clash) {
        const whose = clash.project === network.project ? `network ${clash.name}` : 'a network of another project';
        throw new NexusError('conflict', `cidr ${network.cidr} overlaps ${whose} (${clash.cidr})`, {
          suggestion: 'Choose a block no other network uses: networks never overlap, so every VM address is one place on its host.',
        });
      }
      return this.insert(trx, project, network);
    });
  }

  async ensureDefault(project: string, pool: DefaultNetworkPool): Promise<NetworkRecord> {
    const existing = await this.byName(project, DEFAULT_NETWORK);
    if (existing) return existing;
    return this.db.transaction().execute(async (trx) => {
      const projectId = await projectIdOf(trx, project);
      await lockNetworks(trx);
      const again = await this.byName(project, DEFAULT_NETWORK, trx);
      if (again) return again;
      const taken = await blocksOf(trx);
      const block = freeBlockIn(
        pool.pool,
        pool.prefixLength,
        taken.map((other) => networkBlockOf(other.cidr)),
      );
      if (!block) {
        throw new NexusError(
          'conflict',
          `no free /${pool.prefixLength} is left in the default network pool ${formatIpv4Block(pool.pool)} for project ${project}`,
          {
            suggestion: 'Create a network for the project with POST /v1/networks, or give the manager a larger NEXUS_NETWORK_POOL.',
          },
        );
      }
      return this.insert(trx, projectId, { project, name: DEFAULT_NETWORK, cidr: formatIpv4Block(block), egress: 'allow', dns: [] });
    });
  }

  async get(id: string): Promise<NetworkRecord | undefined> {
    const row = await this.select(this.db).where('network.id', '=', id).executeTakeFirst();
    return row && toRecord(row as NetworkRow);
  }

  async byName(project: string, name: string, db: Kysely<Schema> = this.db): Promise<NetworkRecord | undefined> {
    const row = await this.select(db).where('project.name', '=', project).where('network.name', '=', name).executeTakeFirst();
    return row && toRecord(row as NetworkRow);
  }

  async list(projects?: string[]): Promise<NetworkRecord[]> {
    let query = this.select(this.db).orderBy('project.name').orderBy('network.name');
    if (projects) query = projects.length > 0 ? query.where('project.name', 'in', projects) : query.where(sql<boolean>`false`);
    return (await query.execute()).map((row) => toRecord(row as NetworkRow));
  }

  async update(id: string, change: { egress?: Egress; dns?: string[] }): Promise<NetworkRecord | undefined> {
    const written = await this.db
      .updateTable('network')
      .set({
        ...(change.egress ? { egress: change.egress } : {}),
        ...(change.dns ? { dns: JSON.stringify(change.dns) } : {}),
        resource_version: sql<number>`resource_version + 1`,
        updated_at: new Date(),
      })
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(written.numUpdatedRows) > 0 ? this.get(id) : undefined;
  }

  async delete(id: string): Promise<{ deleted: boolean; usedBy: string[] }> {
    return this.db.transaction().execute(async (trx) => {
      // FOR UPDATE: a create allocating in it (FOR NO KEY UPDATE) waits, then finds it gone.
      const network = await trx.selectFrom('network').select('id').where('id', '=', id).forUpdate().executeTakeFirst();
      if (!network) return { deleted: false, usedBy: [] };
      const users = await trx
        .selectFrom('vm_nic')
        .innerJoin('vm', 'vm.id', 'vm_nic.vm_id')
        .select('vm.name')
        .where('vm_nic.network_id', '=', id)
        .orderBy('vm.name')
        .execute();
      if (users.length > 0) return { deleted: false, usedBy: users.map((user) => user.name) };
      await trx.deleteFrom('network').where('id', '=', id).execute();
      return { deleted: true, usedBy: [] };
    });
  }

  private async insert(trx: Kysely<Schema>, projectId: string, network: NewNetwork): Promise<NetworkRecord> {
    try {
      const { id } = await trx
        .insertInto('network')
        .values({ project_id: projectId, name: network.name, cidr: network.cidr, egress: network.egress, dns: JSON.stringify(network.dns) })
        .returning('id')
        .executeTakeFirstOrThrow();
      const row = await this.select(trx).where('network.id', '=', id).executeTakeFirstOrThrow();
      return toRecord(row as NetworkRow);
    } catch (error) {
      if ((error as { code?: string }).code === '23505') {
        throw new NexusError('conflict', `a network named ${network.name} already exists in project ${network.project}`, {
          suggestion: 'Choose another name, or use the network that exists.',
        });
      }
      throw error;
    }
  }

  private select(db: Kysely<Schema>) {
    return db
      .selectFrom('network')
      .innerJoin('project', 'project.id', 'network.project_id')
      .select([
        'network.id',
        'network.project_id',
        'project.name as project',
        'network.name',
        sql<string>`network.cidr::text`.as('cidr'),
        'network.egress',
        'network.dns',
        'network.resource_version',
        'network.created_at',
        'network.updated_at',
        sql<number>`(SELECT count(*) FROM vm_nic WHERE vm_nic.network_id = network.id)`.as('vm_count'),
      ]);
  }
}

async function projectIdOf(trx: Kysely<Schema>, name: string): Promise<string> {
  const row = await trx.selectFrom('project').select('id').where('name', '=', name).executeTakeFirst();
  if (!row) throw new NexusError('not_found', `no project ${name}`, { suggestion: 'POST /v1/projects creates it.' });
  return row.id;
}

/** Networks are made one at a time (reads go on): the overlap check and the insert are one step. */
async function lockNetworks(trx: Kysely<Schema>): Promise<void> {
  await sql`LOCK TABLE network IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
}

async function blocksOf(trx: Kysely<Schema>): Promise<Array<{ name: string; project: string; cidr: string }>> {
  return trx
    .selectFrom('network')
    .innerJoin('project', 'project.id', 'network.project_id')
    .select(['network.name', 'project.name as project', sql<string>`network.cidr::text`.as('cidr')])
    .execute();
}

function toRecord(row: NetworkRow): NetworkRecord {
  return {
    id: row.id,
    projectId: row.project_id,
    project: row.project,
    name: row.name,
    cidr: row.cidr,
    egress: row.egress,
    dns: row.dns,
    vmCount: Number(row.vm_count),
    resourceVersion: Number(row.resource_version),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
