import { type Kysely, type Selectable, sql } from 'kysely';
import type { VmmName } from '../../../contracts/machine-spec.js';
import type { DesiredState } from '../../../contracts/vm-api.js';
import { NexusError } from '../../../kit/nexus-error.js';
import type { ProjectQuota, ProjectUsage } from '../../domain/access-policy.js';
import type { StartHistory } from '../../domain/vm-lifecycle.js';
import { networkBlockOf, pickAddress } from '../../domain/network-rules.js';
import type {
  PortHolder,
  StoredVmSpec,
  EventsFilter,
  HostAllocation,
  NewVm,
  NicRequest,
  Observation,
  QuotaCheck,
  VmEventRecord,
  VmFilter,
  VmNic,
  VmRecord,
  VmRepo,
} from '../../ports/vm-repo.js';
import type { Schema, VmEventTable, VmTable } from './schema.js';

type VmRow = Selectable<VmTable> & { project: string; nics: VmNic[] | null };

/** A VM's NICs, by index, as one JSON array: no second query per VM, in a list or anywhere. */
const NICS = sql<VmNic[] | null>`(
  SELECT jsonb_agg(jsonb_build_object(
    'index', nic.nic_index, 'networkId', nic.network_id, 'network', net.name, 'ip', host(nic.ip),
    'cidr', net.cidr::text, 'egress', net.egress, 'dns', net.dns) ORDER BY nic.nic_index)
  FROM vm_nic nic JOIN network net ON net.id = nic.network_id
  WHERE nic.vm_id = vm.id)`;

export class SqlVmRepo implements VmRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  /**
   * Under a lock on the project's row, taken in its own statement before the count: under READ
   * COMMITTED each later statement sees what every earlier lock holder committed, where one
   * INSERT ... SELECT (or a lock inside a CTE) counts from a snapshot taken before it waited. A
   * project without quota takes the row shared, so its creates still run side by side yet a quota
   * set meanwhile waits for them; one with a quota takes it exclusively, so its creates count one
   * after another. On PGlite a transaction holds the only session, which serializes them anyway.
   */
  async create(vm: NewVm, check: QuotaCheck): Promise<VmRecord> {
    try {
      const unlimited = await this.db.transaction().execute(async (trx) => {
        const project = await lockProject(trx, vm.project, 'shared');
        return hasQuota(project) ? undefined : insertVm(trx, project.id, vm);
      });
      if (unlimited) return unlimited;
      // The project has a quota (or got one while we looked): start over, holding it alone.
      return await this.db.transaction().execute(async (trx) => {
        const project = await lockProject(trx, vm.project, 'exclusive');
        if (hasQuota(project)) check(project, await usageOf(trx, project.id));
        return insertVm(trx, project.id, vm);
      });
    } catch (error) {
      // Only the name can clash here: allocations in a network take its row in turn, so the address
      // constraint (vm_nic_address_unique) is a backstop that never fires; if it did, that is a bug, left to surface as one.
      if ((error as { code?: string; constraint?: string }).code === '23505' && (error as { constraint?: string }).constraint !== 'vm_nic_address_unique') {
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
    if (filter.projects) query = filter.projects.length > 0 ? query.where('project.name', 'in', filter.projects) : query.where(sql<boolean>`false`);
    return (await query.execute()).map(toRecord);
  }

  async ids(): Promise<string[]> {
    return (await this.db.selectFrom('vm').select('id').execute()).map((row) => row.id);
  }

  async setDesired(id: string, desired: DesiredState, expectedVersion?: number): Promise<VmRecord | 'stale' | undefined> {
    let update = this.db
      .updateTable('vm')
      .from('project')
      .set({ desired_state: desired, updated_at: new Date(), resource_version: sql<number>`vm.resource_version + 1`, start_failures: 0, started_at: null })
      .whereRef('project.id', '=', 'vm.project_id')
      .where('vm.id', '=', id);
    if (expectedVersion !== undefined) update = update.where('vm.resource_version', '=', expectedVersion);
    const row = await update
      .returningAll('vm')
      .returning(['project.name as project', NICS.as('nics')])
      .executeTakeFirst();
    if (row) return toRecord(row);
    const exists = await this.db.selectFrom('vm').select('id').where('id', '=', id).executeTakeFirst();
    return exists ? 'stale' : undefined;
  }

  async setHost(id: string, hostId: string, placedPaths: Record<string, string>, attempt = 1): Promise<PortHolder[]> {
    const ports = await this.db
      .transaction()
      .execute(async (trx) => {
        const row = await trx.selectFrom('vm').select('spec').where('id', '=', id).forUpdate().executeTakeFirst();
        const wanted = ((row?.spec as StoredVmSpec | undefined)?.ports ?? []).map((port) => ({ protocol: port.protocol, hostPort: port.host_port }));
        // A VM placed again (its host gone) gives up what it held on the old one.
        await trx.deleteFrom('vm_port').where('vm_id', '=', id).execute();
        if (wanted.length > 0) {
          const reserved = await trx
            .insertInto('vm_port')
            .values(wanted.map((port) => ({ vm_id: id, host_id: hostId, protocol: port.protocol, host_port: port.hostPort })))
            .onConflict((conflict) => conflict.constraint('vm_port_host_unique').doNothing())
            .returning('host_port')
            .execute();
          // Another VM holds one there: undo, and say who.
          if (reserved.length < wanted.length) throw new PortsTaken(wanted);
        }
        await trx
          .updateTable('vm')
          .set({ host_id: hostId, placed_paths: JSON.stringify(placedPaths), updated_at: new Date() })
          .where('id', '=', id)
          .execute();
        return [];
      })
      .catch((error: unknown) => {
        if (error instanceof PortsTaken) return error.ports;
        throw error;
      });
    if (ports.length === 0) return [];
    const holders = (await this.portHolders(ports)).filter((holder) => holder.hostId === hostId && holder.vmId !== id);
    // The holder went in between: try again, so an empty answer always means placed.
    if (holders.length === 0 && attempt < 3) return this.setHost(id, hostId, placedPaths, attempt + 1);
    return holders;
  }

  async portHolders(ports: ReadonlyArray<{ protocol: 'tcp' | 'udp'; hostPort: number }>): Promise<PortHolder[]> {
    if (ports.length === 0) return [];
    const rows = await this.db
      .selectFrom('vm_port')
      .innerJoin('vm', 'vm.id', 'vm_port.vm_id')
      .innerJoin('project', 'project.id', 'vm.project_id')
      .select(['vm_port.host_id', 'vm_port.protocol', 'vm_port.host_port', 'vm.id', 'vm.name', 'project.name as project'])
      .where((eb) => eb.or(ports.map((port) => eb.and([eb('vm_port.protocol', '=', port.protocol), eb('vm_port.host_port', '=', port.hostPort)]))))
      .orderBy('vm_port.host_port')
      .orderBy('vm.name')
      .execute();
    return rows.map((row) => ({ hostId: row.host_id, protocol: row.protocol, hostPort: row.host_port, vmId: row.id, vmName: row.name, project: row.project }));
  }

  async setAgentView(id: string, view: { driver: VmmName; apiSocket: string; consoleLog: string }): Promise<void> {
    await this.db.updateTable('vm').set({ driver: view.driver, api_socket: view.apiSocket, console_log: view.consoleLog }).where('id', '=', id).execute();
  }

  async recordStarts(id: string, starts: { failures: number; startedAt?: Date | null }, seen: StartHistory): Promise<boolean> {
    const written = await this.db
      .updateTable('vm')
      .set({ start_failures: starts.failures, ...(starts.startedAt !== undefined ? { started_at: starts.startedAt } : {}) })
      .where('id', '=', id)
      .where('start_failures', '=', seen.startFailures)
      .where(sql<boolean>`started_at IS NOT DISTINCT FROM ${seen.startedAt}::timestamptz`)
      .executeTakeFirst();
    return Number(written.numUpdatedRows) > 0;
  }

  /**
   * One statement: lock the row, write the new state (and error) if anything changed, and record
   * the event, so a reconciler pass costs one round trip per observation.
   */
  async observe(id: string, observation: Observation): Promise<void> {
    const setError = observation.lastError !== undefined;
    const errorJson = observation.lastError ? JSON.stringify(observation.lastError) : null;
    const level = observation.level ?? (observation.lastError ? 'error' : 'info');
    // The resource version follows the user's writes only: the reconciler's never make an If-Match fail.
    await sql`
      WITH current AS (
        SELECT id, observed_state FROM vm WHERE id = ${id} FOR UPDATE
      ), written AS (
        UPDATE vm SET
          observed_state = ${observation.to},
          updated_at = now(),
          last_error = CASE WHEN ${setError}::boolean THEN ${errorJson}::jsonb ELSE vm.last_error END
        FROM current
        WHERE vm.id = current.id AND (current.observed_state <> ${observation.to} OR ${setError}::boolean)
        RETURNING current.observed_state AS from_state
      )
      INSERT INTO vm_event (vm_id, level, kind, from_state, to_state, message)
      SELECT ${id}, ${level}, CASE WHEN from_state <> ${observation.to} THEN 'state_changed' ELSE 'error' END, from_state, ${observation.to}, ${observation.message}
      FROM written
      WHERE from_state <> ${observation.to} OR ${errorJson !== null}::boolean`.execute(this.db);
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('vm').where('id', '=', id).execute();
  }

  async events(id: string): Promise<VmEventRecord[]> {
    const rows = await this.db.selectFrom('vm_event').selectAll().where('vm_id', '=', id).orderBy('created_at').orderBy('id').execute();
    return rows.map(toEventRecord);
  }

  async eventsAfter(filter: EventsFilter): Promise<VmEventRecord[]> {
    const levels = { info: ['info', 'warn', 'error'], warn: ['warn', 'error'], error: ['error'] } as const;
    let query = this.db
      .selectFrom('vm_event')
      .innerJoin('vm', 'vm.id', 'vm_event.vm_id')
      .innerJoin('project', 'project.id', 'vm.project_id')
      .selectAll('vm_event')
      .where('vm_event.level', 'in', [...levels[filter.minLevel]])
      .orderBy('vm_event.created_at')
      .orderBy('vm_event.id')
      .limit(filter.limit);
    const { at, id } = filter.after;
    // With an id, the position is that event's own created_at, read here: Postgres keeps
    // microseconds and a Date (so `at`, from a cursor) only milliseconds, and the event itself
    // would sort after `at` and be given again. `at` stands in for an event that is not (or no longer) stored.
    query =
      id === undefined
        ? query.where('vm_event.created_at', '>', at)
        : query.where(
            sql<boolean>`(vm_event.created_at, vm_event.id) > (coalesce((SELECT seen.created_at FROM vm_event seen WHERE seen.id = ${id}), ${at}), ${id}::uuid)`,
          );
    if (filter.vmId) query = query.where('vm_event.vm_id', '=', filter.vmId);
    if (filter.projects) query = filter.projects.length > 0 ? query.where('project.name', 'in', filter.projects) : query.where(sql<boolean>`false`);
    return (await query.execute()).map(toEventRecord);
  }

  async allocations(): Promise<HostAllocation[]> {
    const rows = await this.db
      .selectFrom('vm')
      .select((eb) => ['host_id', eb.fn.sum<number>(sql`(spec->>'vcpu')::int`).as('vcpus'), eb.fn.sum<number>(sql`(spec->>'mem_mib')::int`).as('memory_mib')])
      .where('host_id', 'is not', null)
      .groupBy('host_id')
      .execute();
    return rows.map((row) => ({ hostId: row.host_id as string, vcpus: Number(row.vcpus), memoryMib: Number(row.memory_mib) }));
  }

  async stateCounts(): Promise<Array<{ hostId: string | null; state: string; count: number }>> {
    const rows = await this.db
      .selectFrom('vm')
      .select((eb) => ['host_id', 'observed_state', eb.fn.countAll<number>().as('count')])
      .groupBy(['host_id', 'observed_state'])
      .execute();
    return rows.map((row) => ({ hostId: row.host_id, state: row.observed_state, count: Number(row.count) }));
  }

  private selectVms() {
    return this.db
      .selectFrom('vm')
      .innerJoin('project', 'project.id', 'vm.project_id')
      .selectAll('vm')
      .select(['project.name as project', NICS.as('nics')]);
  }
}

type Transaction = Kysely<Schema>;
type LockedProject = ProjectQuota & { id: string };

/** The project's row, locked until the transaction ends: `shared` by many at once, `exclusive` by one. */
async function lockProject(trx: Transaction, name: string, mode: 'shared' | 'exclusive'): Promise<LockedProject> {
  const query = trx.selectFrom('project').select(['id', 'max_vms', 'max_vcpus', 'max_memory_mib']).where('name', '=', name);
  // NO KEY UPDATE, not UPDATE: the VM rows' foreign keys (KEY SHARE) of other transactions need not wait.
  const row = await (mode === 'shared' ? query.forShare() : query.forNoKeyUpdate()).executeTakeFirst();
  if (!row) throw new NexusError('not_found', `no project ${name}`, { suggestion: 'POST /v1/projects creates it.' });
  return { id: row.id, maxVms: row.max_vms, maxVcpus: row.max_vcpus, maxMemoryMib: row.max_memory_mib };
}

function hasQuota(project: ProjectQuota): boolean {
  return project.maxVms !== null || project.maxVcpus !== null || project.maxMemoryMib !== null;
}

/** What the project's VMs take now; those being deleted no longer count. */
async function usageOf(trx: Transaction, projectId: string): Promise<ProjectUsage> {
  const row = await trx
    .selectFrom('vm')
    .where('project_id', '=', projectId)
    .where('desired_state', '<>', 'deleted')
    .select((eb) => [
      eb.fn.countAll<number>().as('vms'),
      eb.fn.coalesce(eb.fn.sum<number>(sql`(spec->>'vcpu')::int`), sql<number>`0`).as('vcpus'),
      eb.fn.coalesce(eb.fn.sum<number>(sql`(spec->>'mem_mib')::int`), sql<number>`0`).as('memory_mib'),
    ])
    .executeTakeFirstOrThrow();
  return { vms: Number(row.vms), vcpus: Number(row.vcpus), memoryMib: Number(row.memory_mib) };
}

async function insertVm(trx: Transaction, projectId: string, vm: NewVm): Promise<VmRecord> {
  const row = await trx
    .insertInto('vm')
    .values({
      project_id: projectId,
      name: vm.name,
      spec: JSON.stringify(vm.spec),
      desired_state: vm.desiredState,
      observed_state: 'requested',
      tags: JSON.stringify(vm.tags),
      host_id: vm.placement?.hostId ?? null,
      ...(vm.placement ? { placed_paths: JSON.stringify(vm.placement.placedPaths) } : {}),
      last_error: null,
      expires_at: vm.expiresAt,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  const nics: VmNic[] = [];
  for (const [index, nic] of (vm.nics ?? []).entries()) nics.push(await allocateNic(trx, projectId, row.id, index, nic));
  return toRecord({ ...row, project: vm.project, nics });
}

/**
 * Gives the VM's NIC its address: under the network's row (NO KEY UPDATE: allocations in one
 * network go one at a time; a delete of it, FOR UPDATE, waits or is waited for), the network's
 * used addresses are read and `pickAddress` chooses; the unique constraint on (network, ip) backs it.
 */
async function allocateNic(trx: Transaction, projectId: string, vmId: string, index: number, nic: NicRequest): Promise<VmNic> {
  const network = await trx
    .selectFrom('network')
    .select(['id', 'name', sql<string>`cidr::text`.as('cidr'), 'egress', 'dns'])
    .where('id', '=', nic.networkId)
    .where('project_id', '=', projectId)
    .forNoKeyUpdate()
    .executeTakeFirst();
  if (!network) throw new NexusError('not_found', `no network ${nic.networkId} in the VM's project`, { suggestion: 'GET /v1/networks lists them.' });
  const used = await trx
    .selectFrom('vm_nic')
    .innerJoin('vm', 'vm.id', 'vm_nic.vm_id')
    .select([sql<string>`host(vm_nic.ip)`.as('ip'), 'vm.name'])
    .where('vm_nic.network_id', '=', network.id)
    .execute();
  const ip = pickAddress({ ...networkBlockOf(network.cidr), name: network.name }, new Map(used.map((row) => [row.ip, row.name])), nic.ip);
  await trx.insertInto('vm_nic').values({ vm_id: vmId, nic_index: index, network_id: network.id, ip }).execute();
  return { index, networkId: network.id, network: network.name, ip, cidr: network.cidr, egress: network.egress, dns: network.dns };
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
    status: {
      driver: row.driver,
      apiSocket: row.api_socket,
      consoleLog: row.console_log,
      placedPaths: row.placed_paths,
      startFailures: row.start_failures,
      startedAt: row.started_at,
    },
    lastError: row.last_error,
    tags: row.tags,
    nics: row.nics ?? [],
    expiresAt: row.expires_at,
    resourceVersion: Number(row.resource_version),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toEventRecord(row: Selectable<VmEventTable>): VmEventRecord {
  return {
    id: row.id,
    vmId: row.vm_id,
    level: row.level,
    kind: row.kind,
    fromState: row.from_state,
    toState: row.to_state,
    message: row.message,
    createdAt: row.created_at,
  };
}

/** Thrown inside a placement's transaction to roll it back: a port it would reserve is held. */
class PortsTaken extends Error {
  constructor(readonly ports: Array<{ protocol: 'tcp' | 'udp'; hostPort: number }>) {
    super('a host port is taken');
  }
}
