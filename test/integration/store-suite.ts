import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { HostCapacity } from '../../src/contracts/agent-api.js';
import type { Database } from '../../src/manager/adapters/sql/database.js';
import { migrateToLatest } from '../../src/manager/adapters/sql/migrator.js';
import type { HostImage } from '../../src/contracts/image-api.js';
import { SqlHostRepo } from '../../src/manager/adapters/sql/sql-host-repo.js';
import { SqlImageRepo } from '../../src/manager/adapters/sql/sql-image-repo.js';
import { SqlVmRepo } from '../../src/manager/adapters/sql/sql-vm-repo.js';
import { SqlIdempotencyRepo } from '../../src/manager/adapters/sql/sql-idempotency-repo.js';
import { SqlAuditRepo } from '../../src/manager/adapters/sql/sql-access-repos.js';
import * as adminTokenScope from '../../src/manager/adapters/sql/migrations/0006-admin-token-scope.js';
import * as vmStatus from '../../src/manager/adapters/sql/migrations/0009-vm-status.js';
import * as networksMigration from '../../src/manager/adapters/sql/migrations/0010-networks.js';
import { SqlNetworkRepo } from '../../src/manager/adapters/sql/sql-network-repo.js';
import { SqlSnapshotRepo } from '../../src/manager/adapters/sql/sql-snapshot-repo.js';
import * as snapshotsMigration from '../../src/manager/adapters/sql/migrations/0012-snapshots.js';
import * as hibernatedMigration from '../../src/manager/adapters/sql/migrations/0013-hibernated.js';
import type { NewSnapshot } from '../../src/manager/ports/snapshot-repo.js';
import { NexusError } from '../../src/kit/nexus-error.js';
import { AuditLog } from '../../src/manager/app/audit-log.js';
import { SecretBox } from '../../src/kit/secret-box.js';
import { hashSecret } from '../../src/kit/secret.js';
import { SEALED_PURPOSE } from '../../src/manager/adapters/sql/sealed-purposes.js';
import { type ProjectQuota, type ProjectUsage, brokenQuota } from '../../src/manager/domain/access-policy.js';

export const CAPACITY: HostCapacity = {
  vcpus: 4,
  memory_mib: 8192,
  memory_available_mib: 6000,
  run_dir: '/srv/fc',
  disk_total_mib: 100_000,
  disk_available_mib: 50_000,
  vms_running: 0,
  kvm: { usable: false, reason: 'test' },
  drivers: [{ name: 'qemu', available: true, version: 'QEMU emulator version 7.2.0' }],
};

const CORE_TABLES = [
  'api_token',
  'audit',
  'host',
  'host_image',
  'idempotency_key',
  'image',
  'join_token',
  'network',
  'project',
  'secret_key_check',
  'snapshot',
  'template',
  'vm',
  'vm_event',
  'vm_nic',
  'vm_port',
];
const T0 = new Date('2026-01-01T00:00:00Z');
const later = (ms: number) => new Date(T0.getTime() + ms);

/**
 * The store's behaviour, run against each database kind the manager supports. Both runs must
 * pass: the same SQL serves PGlite (embedded default) and PostgreSQL (production).
 */
export function defineStoreSuite(kind: 'pglite' | 'postgres', open: () => Promise<Database>, cleanup: () => Promise<void>): void {
  describe(`store [${kind}]`, () => {
    let database: Database;
    let repo: SqlHostRepo;
    const secrets = new SecretBox(randomBytes(32));

    /** A credential as the agent gateway opens it. */
    const opened = (sealed: string | undefined) => secrets.open(sealed ?? '', SEALED_PURPOSE.hostCredential);

    before(async () => {
      database = await open();
      assert.equal(database.kind, kind);
      await migrateToLatest(database.db, { secrets });
      repo = new SqlHostRepo(database.db, secrets);
    });
    after(async () => {
      await database?.close();
      await cleanup();
    });
    beforeEach(async () => {
      await sql`TRUNCATE join_token, host, vm, vm_event, vm_nic, network, image, host_image, snapshot CASCADE`.execute(database.db);
    });

    it('creates every core table, and a second migration run applies nothing', async () => {
      const rows = await sql<{ table_name: string }>`
        SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT LIKE 'kysely_%'
        ORDER BY table_name`.execute(database.db);
      assert.deepEqual(
        rows.rows.map((row) => row.table_name),
        CORE_TABLES,
      );
      assert.deepEqual((await migrateToLatest(database.db, { secrets })).applied, []);
    });

    it('gives every table created_at and updated_at, and seeds the default project', async () => {
      const rows = await sql<{ table_name: string; n: number }>`
        SELECT table_name, count(*) AS n FROM information_schema.columns
        WHERE table_schema = 'public' AND column_name IN ('created_at', 'updated_at') GROUP BY table_name`.execute(database.db);
      assert.equal(rows.rows.length, CORE_TABLES.length);
      for (const row of rows.rows) assert.equal(row.n, 2, row.table_name);
      const project = await database.db.selectFrom('project').select('name').execute();
      assert.deepEqual(project, [{ name: 'default' }]);
    });

    it('enrolls a host with a valid join token, once', async () => {
      await repo.createJoinToken('hash-1', later(60_000));
      const first = await repo.enroll('hash-1', { name: 'h1', address: '10.0.0.1:9090', capacity: CAPACITY, credential: 'c1' }, later(1000));
      assert.ok(first.ok);
      assert.equal(first.host.name, 'h1');
      assert.equal(first.host.status, 'ready');
      assert.deepEqual(first.host.capacity, CAPACITY);
      assert.equal(first.kind, 'enrolled');

      const replay = await repo.enroll('hash-1', { name: 'h2', address: '10.0.0.2:9090', capacity: CAPACITY, credential: 'c2' }, later(2000));
      assert.deepEqual(replay.ok ? 'ok' : replay.reason, 'used');
      assert.equal((await repo.list()).length, 1);
    });

    it('refuses unknown and expired join tokens', async () => {
      const unknown = await repo.enroll('nope', { name: 'h1', address: 'a:1', capacity: CAPACITY, credential: 'c' }, T0);
      assert.equal(unknown.ok ? 'ok' : unknown.reason, 'unknown');
      await repo.createJoinToken('hash-2', later(1000));
      const expired = await repo.enroll('hash-2', { name: 'h1', address: 'a:1', capacity: CAPACITY, credential: 'c' }, later(1000));
      assert.equal(expired.ok ? 'ok' : expired.reason, 'expired');
      assert.deepEqual(await repo.list(), []);
    });

    it('admits exactly one of two agents racing with the same token', async () => {
      await repo.createJoinToken('race', later(60_000));
      const outcomes = await Promise.all(
        ['r1', 'r2'].map((name) => repo.enroll('race', { name, address: 'a:1', capacity: CAPACITY, credential: name }, later(1))),
      );
      assert.equal(outcomes.filter((outcome) => outcome.ok).length, 1);
      assert.equal((await repo.list()).length, 1);
    });

    it('re-enrolling under the name of an unreachable host keeps the host id and replaces the credential', async () => {
      await repo.createJoinToken('t1', later(60_000));
      await repo.createJoinToken('t2', later(60_000));
      const first = await repo.enroll('t1', { name: 'same', address: 'a:1', capacity: CAPACITY, credential: 'old' }, later(1));
      assert.ok(first.ok);
      await repo.markLateHostsUnreachable(later(2), later(3));
      const second = await repo.enroll('t2', { name: 'same', address: 'b:2', capacity: CAPACITY, credential: 'new' }, later(4));
      assert.ok(second.ok);
      assert.equal(second.host.id, first.host.id);
      assert.equal(second.kind, 'reenrolled');
      const stored = await repo.get(first.host.id);
      assert.equal(opened(stored?.credentialSealed), 'new');
      assert.equal(stored?.credentialHash, hashSecret('new'));
      assert.equal(stored?.address, 'b:2');
      assert.equal(stored?.status, 'ready');
    });

    it("refuses a ready host's name unless the token was minted to replace it, and such a token enrolls that host only", async () => {
      await repo.createJoinToken('first', later(60_000));
      const first = await repo.enroll('first', { name: 'busy', address: 'a:1', capacity: CAPACITY, credential: 'real' }, later(1));
      assert.ok(first.ok);
      await repo.createJoinToken('plain', later(60_000));
      const refused = await repo.enroll('plain', { name: 'busy', address: 'evil:1', capacity: CAPACITY, credential: 'evil' }, later(2));
      assert.equal(refused.ok ? 'ok' : refused.reason, 'host_ready');
      assert.equal(!refused.ok && refused.reason === 'host_ready' ? refused.host.id : undefined, first.host.id);
      const untouched = await repo.get(first.host.id);
      assert.equal(untouched?.address, 'a:1');
      assert.equal(opened(untouched?.credentialSealed), 'real');
      const other = await repo.enroll('plain', { name: 'elsewhere', address: 'c:1', capacity: CAPACITY, credential: 'c' }, later(3));
      assert.ok(other.ok, 'a refused enrollment does not use the token up');

      await repo.createJoinToken('replace', later(60_000), 'busy');
      const wrong = await repo.enroll('replace', { name: 'elsewhere-2', address: 'd:1', capacity: CAPACITY, credential: 'd' }, later(4));
      assert.equal(wrong.ok ? 'ok' : wrong.reason, 'wrong_host');
      const replaced = await repo.enroll('replace', { name: 'busy', address: 'b:2', capacity: CAPACITY, credential: 'successor' }, later(5));
      assert.ok(replaced.ok);
      assert.equal(replaced.kind, 'replaced');
      assert.equal(replaced.host.id, first.host.id);
      assert.equal(opened((await repo.get(first.host.id))?.credentialSealed), 'successor');
    });

    it('keeps host credentials only hashed and sealed, and hands them out sealed: no clear copy in the table or a record', async () => {
      await repo.createJoinToken('sealed', later(60_000));
      const credential = `nxhc_${randomBytes(32).toString('base64url')}`;
      const enrolled = await repo.enroll('sealed', { name: 'sealed', address: 'a:1', capacity: CAPACITY, credential }, later(1));
      assert.ok(enrolled.ok);
      const next = `nxhc_${randomBytes(32).toString('base64url')}`;
      const begun = await repo.beginCredentialRotation(enrolled.host.id, next);
      assert.equal(opened(begun?.sealed), next);
      assert.equal(begun?.hash, hashSecret(next));
      assert.deepEqual(await repo.beginCredentialRotation(enrolled.host.id, 'another'), begun, 'a rotation under way keeps its credential');
      const row = await sql<Record<string, unknown>>`SELECT row_to_json(host)::text AS text FROM host WHERE id = ${enrolled.host.id}`.execute(database.db);
      const text = String(row.rows[0]?.text);
      assert.ok(!text.includes(credential) && !text.includes(next), `no clear credential in ${text}`);
      assert.equal((await repo.get(enrolled.host.id))?.nextCredentialHash, hashSecret(next));
      assert.equal(await repo.completeCredentialRotation(enrolled.host.id, hashSecret('not-it'), later(2)), false);
      assert.equal(await repo.completeCredentialRotation(enrolled.host.id, hashSecret(next), later(2)), true);
      const rotated = await repo.get(enrolled.host.id);
      assert.equal(opened(rotated?.credentialSealed), next);
      assert.equal(rotated?.nextCredentialHash, null);
      assert.ok(!JSON.stringify(rotated).includes(next), 'the record holds the credential sealed only');
      // Reading opens nothing: a store with another key lists the host, whose credential it cannot open.
      const elsewhere = await new SqlHostRepo(database.db, new SecretBox(randomBytes(32))).list();
      assert.ok(
        elsewhere.some((host) => host.id === enrolled.host.id),
        'listed all the same',
      );
    });

    it('marks hosts unreachable when their heartbeat is late, and ready again on the next one', async () => {
      await repo.createJoinToken('t', later(60_000));
      const enrolled = await repo.enroll('t', { name: 'h', address: 'a:1', capacity: CAPACITY, credential: 'c' }, later(0));
      assert.ok(enrolled.ok);
      assert.equal(await repo.countReady(), 1);
      assert.deepEqual(await repo.markLateHostsUnreachable(later(-1), later(10)), []);
      assert.deepEqual(await repo.markLateHostsUnreachable(later(5), later(20_000)), [{ id: enrolled.host.id, name: 'h', lastSeenAt: later(0) }]);
      assert.equal((await repo.get(enrolled.host.id))?.status, 'unreachable');
      assert.equal(await repo.countReady(), 0);
      // count(*) is int8: it must come back as a number on both databases.
      assert.equal(typeof (await repo.countReady()), 'number');

      assert.equal(
        await repo.recordHeartbeat(enrolled.host.id, 'a:2', { ...CAPACITY, vms_running: 3 }, later(21_000)),
        'unreachable',
        'the beat that brings it back says so',
      );
      assert.equal(await repo.recordHeartbeat(enrolled.host.id, 'a:2', { ...CAPACITY, vms_running: 3 }, later(21_000)), 'ready');
      assert.equal(await repo.recordHeartbeat('00000000-0000-4000-8000-000000000000', 'a:2', CAPACITY, later(21_000)), undefined);
      const back = await repo.get(enrolled.host.id);
      assert.equal(back?.status, 'ready');
      assert.equal(back?.address, 'a:2');
      assert.equal(back?.capacity.vms_running, 3);
      assert.equal(back?.lastSeenAt.getTime(), later(21_000).getTime());
    });

    it('stores VMs: duplicate names refused, observations become events, allocations summed per host', async () => {
      const vms = new SqlVmRepo(database.db);
      const spec = { vcpu: 2, mem_mib: 256, kernel_path: '/k', initrd_path: null, boot_args: 'x', rootfs_path: '/r', extra_drives: [], nic: true };
      const unlimited = () => assert.fail('the default project has no quota: there is nothing to check');
      const a = await vms.create({ project: 'default', name: 'a', spec, desiredState: 'running', tags: { team: 'x' }, expiresAt: null }, unlimited);
      assert.equal(a.observedState, 'requested');
      assert.equal(a.project, 'default');
      assert.deepEqual(a.tags, { team: 'x' });
      await assert.rejects(
        vms.create({ project: 'default', name: 'a', spec, desiredState: 'running', tags: {}, expiresAt: null }, unlimited),
        (error: Error & { code?: string }) => error.code === 'conflict',
      );
      const b = await vms.create(
        { project: 'default', name: 'b', spec: { ...spec, vcpu: 1, mem_mib: 128 }, desiredState: 'stopped', tags: {}, expiresAt: null },
        unlimited,
      );

      await vms.observe(a.id, { to: 'starting', message: 'starting' });
      await vms.observe(a.id, { to: 'starting', message: 'again' }); // no change, no event
      await vms.observe(a.id, { to: 'failed', message: 'boom', lastError: { reason: 'vmm_failed', message: 'boom', at: T0.toISOString() } });
      const failed = await vms.get(a.id);
      assert.equal(failed?.observedState, 'failed');
      assert.equal(failed?.lastError?.reason, 'vmm_failed');
      const events = await vms.events(a.id);
      assert.deepEqual(
        events.map((event) => [event.fromState, event.toState, event.level]),
        [
          ['requested', 'starting', 'info'],
          ['starting', 'failed', 'error'],
        ],
      );

      await repo.createJoinToken('vm-t', later(60_000));
      const host = await repo.enroll('vm-t', { name: 'h', address: 'a:1', capacity: CAPACITY, credential: 'c' }, later(0));
      assert.ok(host.ok);
      await vms.setHost(a.id, host.host.id, { 'img-1': '/srv/fc/images/img-1/vmlinux' });
      await vms.setHost(b.id, host.host.id, {});
      assert.deepEqual(await vms.allocations(), [{ hostId: host.host.id, vcpus: 3, memoryMib: 384 }]);
      assert.deepEqual((await vms.get(a.id))?.status, {
        driver: null,
        apiSocket: null,
        consoleLog: null,
        placedPaths: { 'img-1': '/srv/fc/images/img-1/vmlinux' },
        startFailures: 0,
        startedAt: null,
      });

      assert.deepEqual(
        (await vms.list({ limit: 1 })).map((vm) => vm.name),
        ['a'],
      );
      assert.deepEqual(
        (await vms.list({ limit: 10, afterName: 'a' })).map((vm) => vm.name),
        ['b'],
      );
      assert.deepEqual(
        (await vms.list({ limit: 10, state: 'failed' })).map((vm) => vm.name),
        ['a'],
      );
      assert.deepEqual(
        (await vms.list({ limit: 10, namePrefix: '%' })).map((vm) => vm.name),
        [],
        'LIKE wildcards are literal',
      );

      const running = await vms.setDesired(b.id, 'running');
      assert.ok(running && running !== 'stale');
      assert.equal(running.desiredState, 'running');
      assert.equal(await vms.setDesired(b.id, 'stopped', running.resourceVersion - 1), 'stale', 'an old version loses');
      assert.notEqual(await vms.setDesired(b.id, 'stopped', running.resourceVersion), 'stale');
      await vms.observe(b.id, { to: 'stopping', message: 'x' });
      assert.equal((await vms.get(b.id))?.resourceVersion, running.resourceVersion + 1, 'observations do not bump the version');
      await vms.delete(a.id);
      assert.equal(await vms.get(a.id), undefined);
      assert.deepEqual(await vms.events(a.id), [], 'events go with their VM');
    });

    it("keeps the reconciler's status of a VM: the agent's view, the start history, renewed when a user asks again", async () => {
      const vms = new SqlVmRepo(database.db);
      const spec = { vcpu: 1, mem_mib: 128, kernel_path: '/k', initrd_path: null, boot_args: 'x', rootfs_path: '/r', extra_drives: [], nic: true };
      const vm = await vms.create({ project: 'default', name: 'status', spec, desiredState: 'running', tags: {}, expiresAt: null }, () => undefined);
      await vms.setAgentView(vm.id, { driver: 'qemu', apiSocket: '/srv/fc/vms/x/sock/qmp.sock', consoleLog: '/srv/fc/vms/x/logs/console.log' });
      assert.equal(await vms.recordStarts(vm.id, { failures: 2, startedAt: T0 }, { startFailures: 0, startedAt: null }), true);
      assert.equal(await vms.recordStarts(vm.id, { failures: 3 }, { startFailures: 2, startedAt: T0 }), true);
      assert.equal(
        await vms.recordStarts(vm.id, { failures: 9 }, { startFailures: 2, startedAt: T0 }),
        false,
        'a count taken from an older read is not written over a newer one',
      );
      const status = (await vms.get(vm.id))?.status;
      assert.deepEqual(status, {
        driver: 'qemu',
        apiSocket: '/srv/fc/vms/x/sock/qmp.sock',
        consoleLog: '/srv/fc/vms/x/logs/console.log',
        placedPaths: {},
        startFailures: 3,
        startedAt: T0,
      });
      assert.deepEqual((await vms.get(vm.id))?.spec, spec, "the user's spec is left as asked");
      const asked = await vms.setDesired(vm.id, 'running');
      assert.ok(asked && asked !== 'stale', 'the VM is there');
      assert.equal(asked.status.startFailures, 0, 'a user asking again renews the restart budget');
      assert.equal(asked.status.startedAt, null);
      assert.equal(asked.status.driver, 'qemu', "the agent's view stays");
      await vms.delete(vm.id);
    });

    it('inserts a VM only if the quota check passes, each of those created at once counting the others', async () => {
      const vms = new SqlVmRepo(database.db);
      await sql`INSERT INTO project (name, max_vcpus) VALUES ('store-quota', 5)`.execute(database.db);
      const spec = { vcpu: 2, mem_mib: 128, kernel_path: '/k', initrd_path: null, boot_args: 'x', rootfs_path: '/r', extra_drives: [], nic: true };
      const seen: number[] = [];
      const check = (quota: ProjectQuota, usage: ProjectUsage) => {
        seen.push(usage.vcpus);
        const broken = brokenQuota(quota, usage, spec.vcpu, spec.mem_mib);
        if (broken) throw new Error(broken);
      };
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, (_, index) =>
          vms.create({ project: 'store-quota', name: `q${index}`, spec, desiredState: 'stopped', tags: {}, expiresAt: null }, check),
        ),
      );
      assert.equal(outcomes.filter((outcome) => outcome.status === 'fulfilled').length, 2, 'two VMs of 2 vCPUs fit in 5');
      assert.deepEqual(
        seen.sort((x, y) => x - y),
        [0, 2, 4, 4, 4, 4, 4, 4],
        'each check counted the VMs inserted before it',
      );
      const stored = await sql<{
        n: number;
      }>`SELECT count(*) AS n FROM vm JOIN project ON project.id = vm.project_id WHERE project.name = 'store-quota'`.execute(database.db);
      assert.equal(stored.rows[0]?.n, 2);
      await assert.rejects(
        vms.create({ project: 'nowhere', name: 'x', spec, desiredState: 'stopped', tags: {}, expiresAt: null }, check),
        (error: Error & { code?: string }) => error.code === 'not_found',
      );
    });

    it('keeps host names unique at the database level: a second host of a name is refused, whatever else differs', async () => {
      await repo.createJoinToken('named', later(60_000));
      const enrolled = await repo.enroll('named', { name: 'only-one', address: 'a:1', capacity: CAPACITY, credential: 'first' }, later(1));
      assert.ok(enrolled.ok, 'the first host of the name enrolls');
      // Written past the repo, as a racing enrollment would: only the table's constraint stands in the way.
      const twin = database.db.insertInto('host').values({
        name: 'only-one',
        address: 'b:2',
        status: 'unreachable',
        capacity: JSON.stringify(CAPACITY),
        credential_hash: hashSecret('second'),
        credential_sealed: secrets.seal('second', SEALED_PURPOSE.hostCredential),
        last_seen_at: later(2),
        updated_at: later(2),
      });
      await assert.rejects(twin.execute(), /duplicate key|unique/i);
      assert.deepEqual(
        (await repo.list()).map((host) => [host.name, host.id]),
        [['only-one', enrolled.host.id]],
      );
    });

    it('keeps join-token hashes and project names unique at the database level', async () => {
      await repo.createJoinToken('x', later(60_000));
      await assert.rejects(repo.createJoinToken('x', later(60_000)), /duplicate key|unique/i);
      await assert.rejects(sql`INSERT INTO project (name) VALUES ('default')`.execute(database.db), /duplicate key|unique/i);
    });
    it('registers images by content across hosts, and keeps each host holdings exact', async () => {
      const images = new SqlImageRepo(database.db);
      const enrolled = async (name: string) => {
        await repo.createJoinToken(`t-${name}`, later(60_000));
        const outcome = await repo.enroll(`t-${name}`, { name, address: `${name}:9090`, capacity: CAPACITY, credential: name }, later(0));
        assert.ok(outcome.ok);
        return outcome.host.id;
      };
      const [a, b] = [await enrolled('img-a'), await enrolled('img-b')];
      const file = (name: string, kind: HostImage['kind'], sha: string, path: string): HostImage => ({
        name,
        kind,
        format: 'raw',
        path,
        size_bytes: 5_000_000_000, // beyond 32 bits: bigint in the database
        sha256: sha.repeat(64),
        ...(kind === 'kernel' ? { boot_args: 'console=ttyS0' } : {}),
      });
      await images.syncHost(a, [file('v1', 'kernel', 'a', '/a/v1/vmlinux'), file('v1', 'rootfs', 'b', '/a/v1/rootfs.ext4')], later(1000));
      await images.syncHost(b, [file('v1-copy', 'kernel', 'a', '/b/v1/vmlinux')], later(1000));
      await images.syncHost(b, [file('v1-copy', 'kernel', 'a', '/b/v1/vmlinux')], later(2000)); // a repeat changes nothing

      const listed = await images.list({});
      assert.equal(listed.length, 2, 'the same kernel on two hosts is one image');
      const kernel = listed.find((image) => image.kind === 'kernel');
      assert.ok(kernel);
      assert.equal(kernel.name, 'v1', 'the first name seen stays');
      assert.equal(kernel.sizeBytes, 5_000_000_000);
      assert.equal(kernel.bootArgs, 'console=ttyS0');
      assert.deepEqual(kernel.hostIds, [a, b].sort());
      assert.deepEqual(
        (await images.list({ kind: 'rootfs' })).map((image) => image.name),
        ['v1'],
      );
      assert.deepEqual(await images.list({ name: 'v2' }), []);
      assert.equal((await images.getMany([kernel.id, '00000000-0000-4000-8000-000000000000'])).length, 1);

      const located = await images.locate([kernel.id]);
      assert.equal(located.get(a)?.get(kernel.id), '/a/v1/vmlinux');
      assert.equal(located.get(b)?.get(kernel.id), '/b/v1/vmlinux');

      await images.syncHost(a, [], later(3000));
      assert.deepEqual((await images.get(kernel.id))?.hostIds, [b], 'a no longer holds it');
      assert.equal((await images.list({})).length, 2, 'an image outlives its last copy: its id keeps its meaning');
      await sql`DELETE FROM host WHERE id = ${b}`.execute(database.db);
      assert.deepEqual((await images.get(kernel.id))?.hostIds, [], 'a host gone takes its holdings along');
    });

    it('pages the audit log by exact time then id, both ways, and exports all of it a batch at a time', async () => {
      const log = new AuditLog(new SqlAuditRepo(database.db), 2);
      // Rows within one millisecond, two of them at the same microsecond: a cursor rounded to a Date would skip or repeat them.
      const times = ['000100', '000200', '000300', '000300', '001000', '002000'].map((micros) => `2026-01-01T00:00:00.${micros}Z`);
      for (const [index, at] of times.entries()) {
        await sql`INSERT INTO audit (actor, action, resource, request_id, result, created_at) VALUES ('store-pager', 'vm.stop', 'vm', ${`r${index}`}, 'success', ${at}::timestamptz)`.execute(
          database.db,
        );
      }
      const rows = await sql<{ id: string; request_id: string }>`SELECT id, request_id FROM audit WHERE actor = 'store-pager'`.execute(database.db);
      const idOf = new Map(rows.rows.map((row) => [row.request_id, row.id]));
      const oldestFirst = times
        .map((at, index) => ({ at, request: `r${index}`, id: idOf.get(`r${index}`) ?? '' }))
        .sort((x, y) => (x.at === y.at ? (x.id < y.id ? -1 : 1) : x.at < y.at ? -1 : 1))
        .map((row) => row.request);

      const paged: string[] = [];
      let cursor: string | null = null;
      do {
        const page: { items: Array<{ request_id: string }>; next_cursor: string | null } = await log.page({
          actor: 'store-pager',
          limit: 2,
          ...(cursor ? { cursor } : {}),
        });
        paged.push(...page.items.map((entry) => entry.request_id));
        cursor = page.next_cursor;
        assert.ok(paged.length <= times.length + 2, 'the pages end');
      } while (cursor);
      assert.deepEqual(paged, [...oldestFirst].reverse(), 'newest first, none skipped or repeated');

      const exported: string[] = [];
      for await (const entry of await log.export({ actor: 'store-pager' })) exported.push(entry.request_id);
      assert.deepEqual(exported, oldestFirst, 'the export: every row, oldest first, across batches');
      await sql`DELETE FROM audit WHERE actor = 'store-pager'`.execute(database.db);
    });

    it('indexes the audit log in the order its pages and exports read it: (created_at, id), behind actor and resource too', async () => {
      const indexes = await sql<{ indexdef: string }>`SELECT indexdef FROM pg_indexes WHERE tablename = 'audit' ORDER BY indexname`.execute(database.db);
      const columns = indexes.rows.map((row) => /\((.*)\)$/.exec(row.indexdef)?.[1] ?? row.indexdef);
      for (const wanted of ['created_at, id', 'actor, created_at, id', 'resource_id, created_at, id'])
        assert.ok(columns.includes(wanted), `an index on (${wanted}): ${columns.join('; ')}`);
      for (const replaced of ['created_at', 'actor, created_at', 'resource_id, created_at'])
        assert.ok(!columns.includes(replaced), `(${replaced}) is replaced, not kept beside it`);
    });

    it('an admin token names no project: the migration clears older ones, and the database refuses new ones', async () => {
      const project = await database.db.selectFrom('project').select('id').where('name', '=', 'default').executeTakeFirstOrThrow();
      const insert = (owner: string) =>
        sql`INSERT INTO api_token (project_id, owner, role, secret_hash) VALUES (${project.id}, ${owner}, 'admin', 'not-a-hash')`.execute(database.db);
      await adminTokenScope.down(database.db);
      await insert('scoped-admin-of-old');
      await adminTokenScope.up(database.db);
      const cleared = await sql<{ project_id: string | null }>`SELECT project_id FROM api_token WHERE owner = 'scoped-admin-of-old'`.execute(database.db);
      assert.deepEqual(cleared.rows, [{ project_id: null }], 'it acted on every project, and now says so');
      await assert.rejects(insert('scoped-admin-now'), /api_token_admin_every_project/);
      await sql`DELETE FROM api_token WHERE owner = 'scoped-admin-of-old'`.execute(database.db);
    });

    it("migration 0009 moves the agent's driver out of the spec and back, and down() puts placed image paths back into the spec", async () => {
      const vms = new SqlVmRepo(database.db);
      const spec = {
        vcpu: 1,
        mem_mib: 128,
        kernel_path: null,
        kernel_image_id: 'k-1',
        initrd_path: null,
        initrd_image_id: null,
        boot_args: 'x',
        rootfs_path: null,
        rootfs_image_id: 'r-1',
        extra_drives: [
          { id: 'data', path: null, image_id: 'd-1', read_only: true },
          { id: 'scratch', path: '/srv/fc/scratch.img', image_id: null, read_only: false },
        ],
        nic: true,
      };
      const vm = await vms.create({ project: 'default', name: 'migrated', spec, desiredState: 'stopped', tags: {}, expiresAt: null }, () => undefined);
      await repo.createJoinToken('migrated-t', later(60_000));
      const enrolled = await repo.enroll('migrated-t', { name: 'migrated-host', address: 'a:1', capacity: CAPACITY, credential: 'c' }, later(0));
      assert.ok(enrolled.ok, 'the host enrolled');
      await vms.setHost(vm.id, enrolled.host.id, {
        'k-1': '/srv/fc/images/k/vmlinux',
        'r-1': '/srv/fc/images/r/rootfs.ext4',
        'd-1': '/srv/fc/images/d/data.ext4',
      });
      await vms.setAgentView(vm.id, { driver: 'firecracker', apiSocket: '/s', consoleLog: '/c' });
      await vmStatus.down(database.db);
      const old = await sql<{ spec: Record<string, unknown> }>`SELECT spec FROM vm WHERE id = ${vm.id}`.execute(database.db);
      assert.deepEqual(old.rows[0]?.spec, {
        ...spec,
        driver: 'firecracker',
        kernel_path: '/srv/fc/images/k/vmlinux',
        rootfs_path: '/srv/fc/images/r/rootfs.ext4',
        extra_drives: [
          { id: 'data', path: '/srv/fc/images/d/data.ext4', image_id: 'd-1', read_only: true },
          { id: 'scratch', path: '/srv/fc/scratch.img', image_id: null, read_only: false },
        ],
      });
      await vmStatus.up(database.db);
      const back = await vms.get(vm.id);
      assert.equal(back?.status.driver, 'firecracker', 'the driver moved out of the spec again');
      assert.equal((back?.spec as unknown as Record<string, unknown>).driver, undefined);
      assert.equal(back?.spec.kernel_path, '/srv/fc/images/k/vmlinux', 'a row placed before 0009 keeps its paths in the spec, which still serve');
      await vms.delete(vm.id);
    });

    /** A stopped VM in `project` with one NIC on `networkId` (at `ip` when given). */
    const vmOnNetwork = (vms: SqlVmRepo, name: string, networkId: string, options: { project?: string; ip?: string } = {}) =>
      vms.create(
        {
          project: options.project ?? 'default',
          name,
          spec: { vcpu: 1, mem_mib: 128, kernel_path: '/k', initrd_path: null, boot_args: 'x', rootfs_path: '/r', extra_drives: [], nic: true },
          desiredState: 'stopped',
          tags: {},
          expiresAt: null,
          nics: [{ networkId, ...(options.ip ? { ip: options.ip } : {}) }],
        },
        () => undefined,
      );
    const refusedWith = (code: string, message: RegExp) => (error: unknown) => {
      assert.ok(error instanceof NexusError, `a NexusError, not ${String(error)}`);
      assert.equal(error.code, code, error.message);
      assert.match(error.message, message);
      return true;
    };

    it('keeps networks apart: no two blocks overlap, in one project or across, not even when created at once', async () => {
      const networks = new SqlNetworkRepo(database.db);
      await sql`INSERT INTO project (name) VALUES ('store-net-other') ON CONFLICT DO NOTHING`.execute(database.db);
      const made = await networks.create({ project: 'default', name: 'backend', cidr: '10.1.0.0/16', egress: 'deny', dns: ['10.1.0.53'] });
      assert.deepEqual(
        { name: made.name, project: made.project, cidr: made.cidr, egress: made.egress, dns: made.dns, vmCount: made.vmCount },
        { name: 'backend', project: 'default', cidr: '10.1.0.0/16', egress: 'deny', dns: ['10.1.0.53'], vmCount: 0 },
      );
      await assert.rejects(
        networks.create({ project: 'default', name: 'inner', cidr: '10.1.8.0/24', egress: 'allow', dns: [] }),
        refusedWith('conflict', /overlaps network backend/),
      );
      await assert.rejects(
        networks.create({ project: 'store-net-other', name: 'theirs', cidr: '10.1.0.0/24', egress: 'allow', dns: [] }),
        refusedWith('conflict', /overlaps a network of another project/),
      );
      await assert.rejects(
        networks.create({ project: 'default', name: 'backend', cidr: '10.2.0.0/24', egress: 'allow', dns: [] }),
        refusedWith('conflict', /already exists/),
      );
      const racing = await Promise.allSettled(
        Array.from({ length: 6 }, (_, index) =>
          networks.create({
            project: index % 2 ? 'default' : 'store-net-other',
            name: `race-${index}`,
            cidr: index % 3 ? '10.3.0.0/23' : '10.3.1.0/24',
            egress: 'allow',
            dns: [],
          }),
        ),
      );
      assert.equal(racing.filter((outcome) => outcome.status === 'fulfilled').length, 1, 'of six overlapping networks created at once, one is made');
      assert.deepEqual(
        (await networks.list(['default'])).map((network) => network.name).filter((name) => !name.startsWith('race')),
        ['backend'],
      );
      const changed = await networks.update(made.id, { egress: 'allow', dns: [] });
      assert.equal(changed?.egress, 'allow');
      assert.equal(changed?.resourceVersion, made.resourceVersion + 1);
    });

    it("makes a project's default network once, from the pool's first free block", async () => {
      const networks = new SqlNetworkRepo(database.db);
      const pool = { pool: { base: 0x0adc0000, prefixLength: 22 }, prefixLength: 24 };
      await networks.create({ project: 'default', name: 'squatter', cidr: '10.220.0.0/24', egress: 'allow', dns: [] });
      const defaults = await Promise.all([networks.ensureDefault('default', pool), networks.ensureDefault('default', pool)]);
      assert.equal(defaults[0].id, defaults[1].id, 'asked twice at once, made once');
      assert.equal(defaults[0].cidr, '10.220.1.0/24', 'the first block no network overlaps');
      assert.equal(defaults[0].name, 'default');
    });

    it('reserves the host ports a VM publishes as it is placed: one VM per port and host, even when placed at once', async () => {
      const vms = new SqlVmRepo(database.db);
      const publishing = (name: string) =>
        vms.create(
          {
            project: 'default',
            name,
            spec: {
              vcpu: 1,
              mem_mib: 128,
              kernel_path: '/k',
              initrd_path: null,
              boot_args: 'x',
              rootfs_path: '/r',
              extra_drives: [],
              nic: true,
              ports: [{ host_port: 8080, guest_port: 80, protocol: 'tcp' }],
            },
            desiredState: 'stopped',
            tags: {},
            expiresAt: null,
          },
          () => undefined,
        );
      const enroll = async (name: string) => {
        await repo.createJoinToken(`port-${name}`, later(60_000));
        const enrolled = await repo.enroll(`port-${name}`, { name, address: 'a:1', capacity: CAPACITY, credential: name }, later(0));
        assert.ok(enrolled.ok, `host ${name} enrolled`);
        return enrolled.host.id;
      };
      const [hostA, hostB] = [await enroll('ports-a'), await enroll('ports-b')];
      const racers = await Promise.all(Array.from({ length: 6 }, (_, index) => publishing(`port-${index}`)));
      const results = await Promise.all(racers.map((vm) => vms.setHost(vm.id, hostA, {})));
      const winners = racers.filter((_, index) => results[index]?.length === 0);
      assert.equal(winners.length, 1, 'six placed on one host at once: one holds the port');
      const winner = winners[0];
      const losers = racers.filter((vm) => vm !== winner);
      for (const [index, result] of results.entries()) {
        if (racers[index] !== winner)
          assert.deepEqual(
            result.map((holder) => holder.vmName),
            [winner?.name],
            'a loser is told who holds it',
          );
      }
      for (const loser of losers) assert.equal((await vms.get(loser.id))?.hostId, null, `${loser.name} is not placed`);
      const [second, third] = losers;
      assert.ok(second && third && winner);
      assert.deepEqual(await vms.setHost(second.id, hostB, {}), [], 'on another host the port is free');
      assert.deepEqual(
        (await vms.portHolders([{ protocol: 'tcp', hostPort: 8080 }])).map((holder) => [holder.hostId, holder.vmName]).sort(),
        [
          [hostA, winner.name],
          [hostB, second.name],
        ].sort(),
      );
      assert.deepEqual(await vms.portHolders([{ protocol: 'udp', hostPort: 8080 }]), [], 'udp/8080 is another port');
      await vms.delete(winner.id);
      assert.deepEqual(await vms.setHost(third.id, hostA, {}), [], "a port is free again once its VM's row is gone");
      assert.deepEqual(
        await vms.setHost(second.id, hostA, {}),
        [third].map((vm) => ({ hostId: hostA, protocol: 'tcp', hostPort: 8080, vmId: vm.id, vmName: vm.name, project: 'default' })),
      );
      assert.equal((await vms.get(second.id))?.hostId, hostB, 'a refused placement leaves the VM where it was');
    });

    it('gives each NIC an address: the lowest free, never one twice when VMs are created at once; one asked for is checked', async () => {
      const vms = new SqlVmRepo(database.db);
      const networks = new SqlNetworkRepo(database.db);
      const net = await networks.create({ project: 'default', name: 'ipam', cidr: '10.4.0.0/24', egress: 'allow', dns: ['10.4.0.53'] });
      const created = await Promise.all(Array.from({ length: 12 }, (_, index) => vmOnNetwork(vms, `ipam-${index}`, net.id)));
      const addresses = created.map((vm) => vm.nics[0]?.ip).sort((a, b) => Number(a?.split('.')[3]) - Number(b?.split('.')[3]));
      assert.deepEqual(
        addresses,
        Array.from({ length: 12 }, (_, index) => `10.4.0.${index + 2}`),
        'twelve VMs at once: twelve addresses, the lowest ones',
      );
      const first = created[0];
      assert.ok(first, 'a VM was created');
      const read = await vms.get(first.id);
      assert.deepEqual(read?.nics, first.nics, 'a VM read back has its NICs');
      assert.deepEqual(
        { network: read?.nics[0]?.network, cidr: read?.nics[0]?.cidr, egress: read?.nics[0]?.egress, dns: read?.nics[0]?.dns },
        { network: 'ipam', cidr: '10.4.0.0/24', egress: 'allow', dns: ['10.4.0.53'] },
      );
      assert.deepEqual((await vms.list({ limit: 100 })).find((vm) => vm.id === first.id)?.nics, first.nics, 'a list has them too');
      assert.equal((await vmOnNetwork(vms, 'asked', net.id, { ip: '10.4.0.200' })).nics[0]?.ip, '10.4.0.200');
      const holder = created.find((vm) => vm.nics[0]?.ip === '10.4.0.5')?.name;
      await assert.rejects(vmOnNetwork(vms, 'taken', net.id, { ip: '10.4.0.5' }), refusedWith('conflict', new RegExp(`taken by VM ${holder}`)));
      await assert.rejects(vmOnNetwork(vms, 'outside', net.id, { ip: '10.5.0.5' }), refusedWith('unprocessable', /not in network ipam/));
      await sql`INSERT INTO project (name) VALUES ('store-net-other') ON CONFLICT DO NOTHING`.execute(database.db);
      await assert.rejects(vmOnNetwork(vms, 'elsewhere', net.id, { project: 'store-net-other' }), refusedWith('not_found', /no network/));
      const refused = await sql<{ n: number }>`SELECT count(*) AS n FROM vm WHERE name IN ('taken', 'outside', 'elsewhere')`.execute(database.db);
      assert.equal(Number(refused.rows[0]?.n), 0, 'a refused VM leaves no row, and holds no address');
      assert.equal((await networks.get(net.id))?.vmCount, 13);
    });

    it('frees an address only with its VM row, and will not delete a network with NICs: it names their VMs', async () => {
      const vms = new SqlVmRepo(database.db);
      const networks = new SqlNetworkRepo(database.db);
      const net = await networks.create({ project: 'default', name: 'busy', cidr: '10.6.0.0/29', egress: 'allow', dns: [] });
      const a = await vmOnNetwork(vms, 'busy-a', net.id);
      await vmOnNetwork(vms, 'busy-b', net.id);
      assert.deepEqual(await networks.delete(net.id), { deleted: false, usedBy: ['busy-a', 'busy-b'] });
      await vms.setDesired(a.id, 'deleted');
      assert.equal((await vmOnNetwork(vms, 'busy-c', net.id)).nics[0]?.ip, '10.6.0.4', 'a VM being deleted still holds its address');
      await vms.delete(a.id);
      assert.equal((await vmOnNetwork(vms, 'busy-d', net.id)).nics[0]?.ip, a.nics[0]?.ip, 'its row gone, the address is free again');
      await sql`DELETE FROM vm WHERE name LIKE 'busy-%'`.execute(database.db);
      assert.deepEqual(await networks.delete(net.id), { deleted: true, usedBy: [] });
      assert.equal(await networks.get(net.id), undefined);
      await assert.rejects(
        sql`INSERT INTO vm_nic (vm_id, nic_index, network_id, ip) VALUES (gen_random_uuid(), 0, gen_random_uuid(), '10.6.0.9')`.execute(database.db),
        (error: Error & { code?: string }) => error.code === '23503',
        'the database keeps NICs to real VMs and networks',
      );
    });

    it('migration 0010 goes down and up again', async () => {
      await networksMigration.down(database.db);
      const gone = await sql<{ n: number }>`SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('network', 'vm_nic')`.execute(database.db);
      assert.equal(Number(gone.rows[0]?.n), 0);
      await networksMigration.up(database.db);
      const networks = new SqlNetworkRepo(database.db);
      assert.equal((await networks.create({ project: 'default', name: 'again', cidr: '10.7.0.0/24', egress: 'allow', dns: [] })).cidr, '10.7.0.0/24');
    });

    /** A snapshot row of VM `vmId` (the VM need not exist: a snapshot may outlive its VM). */
    const newSnapshot = (id: string, name: string, vmId: string, project = 'default'): NewSnapshot => ({
      id,
      project,
      name,
      vmId,
      vmName: 'web',
      hostId: '99999999-9999-4999-8999-999999999999',
      vcpu: 2,
      memMib: 256,
      source: {
        spec: { vcpu: 2, mem_mib: 256, kernel_path: '/k', initrd_path: null, boot_args: 'x', rootfs_path: '/r', extra_drives: [], nic: true },
        placedPaths: { 'image-1': '/srv/images/rootfs.ext4' },
        nics: [{ networkId: '88888888-8888-4888-8888-888888888888', ip: '10.9.0.2' }],
      },
    });

    it('keeps snapshot rows: creating, then ready with their files; names unique per project; by VM; deleted one or all of a VM', async () => {
      const snapshots = new SqlSnapshotRepo(database.db);
      const vmA = '11111111-aaaa-4aaa-8aaa-111111111111';
      const vmB = '22222222-bbbb-4bbb-8bbb-222222222222';
      const first = await snapshots.create(newSnapshot('00000001-5a5a-4000-8000-000000000000', 'first', vmA));
      assert.equal(first.status, 'creating');
      assert.equal(first.project, 'default');
      assert.equal(first.sizeBytes, 0);
      assert.deepEqual(first.files, []);
      assert.deepEqual(first.source.nics, [{ networkId: '88888888-8888-4888-8888-888888888888', ip: '10.9.0.2' }], 'what a restore needs is kept');
      await assert.rejects(
        snapshots.create(newSnapshot('00000002-5a5a-4000-8000-000000000000', 'first', vmB)),
        refusedWith('conflict', /named first already exists/),
      );
      await assert.rejects(
        snapshots.create(newSnapshot('00000003-5a5a-4000-8000-000000000000', 'x', vmB, 'no-such-project')),
        refusedWith('not_found', /no project/),
      );

      const big = 5 * 1024 ** 3; // past 32 bits: a bigint column
      const ready = await snapshots.markReady(first.id, {
        driver: 'qemu',
        sizeBytes: big,
        files: [{ kind: 'state', path: '/srv/nexus/snapshots/x/state.bin', size_bytes: big }],
      });
      assert.equal(ready?.status, 'ready');
      assert.equal(ready?.sizeBytes, big);
      assert.equal(ready?.driver, 'qemu');
      assert.deepEqual(ready?.files, [{ kind: 'state', path: '/srv/nexus/snapshots/x/state.bin', size_bytes: big }]);
      assert.equal(
        await snapshots.markReady('00000009-5a5a-4000-8000-000000000000', { driver: 'qemu', sizeBytes: 1, files: [] }),
        undefined,
        'no row, nothing marked',
      );

      const second = await snapshots.create(newSnapshot('00000004-5a5a-4000-8000-000000000000', 'second', vmA));
      const third = await snapshots.create(newSnapshot('00000005-5a5a-4000-8000-000000000000', 'third', vmB));
      assert.deepEqual((await snapshots.list({ vmId: vmA })).map((each) => each.name).sort(), ['first', 'second']);
      assert.deepEqual(await snapshots.list({ projects: [] }), [], 'no project, no snapshot');
      assert.equal((await snapshots.list({ projects: ['default'] })).length, 3);
      assert.deepEqual((await snapshots.ids()).sort(), [first.id, second.id, third.id].sort());

      assert.deepEqual((await snapshots.deleteOfVm(vmA)).map((each) => each.id).sort(), [first.id, second.id].sort());
      assert.equal(await snapshots.delete(third.id), true);
      assert.equal(await snapshots.delete(third.id), false, 'deleted once');
      assert.deepEqual(await snapshots.ids(), []);
    });

    it('a VM may be wanted hibernated (0013); going down, that becomes stopped', async () => {
      const vms = new SqlVmRepo(database.db);
      const vm = await vms.create(
        {
          project: 'default',
          name: 'sleeper',
          spec: { vcpu: 1, mem_mib: 128, kernel_path: '/k', initrd_path: null, boot_args: 'x', rootfs_path: '/r', extra_drives: [], nic: false },
          desiredState: 'running',
          tags: {},
          expiresAt: null,
        },
        () => undefined,
      );
      const wanted = await vms.setDesired(vm.id, 'hibernated');
      assert.equal(wanted !== 'stale' && wanted?.desiredState, 'hibernated');
      await hibernatedMigration.down(database.db);
      assert.equal((await vms.get(vm.id))?.desiredState, 'stopped', 'the old schema has no hibernated: stopped');
      await assert.rejects(sql`UPDATE vm SET desired_state = 'hibernated'`.execute(database.db), 'the old constraint refuses it');
      await hibernatedMigration.up(database.db);
      const again = await vms.setDesired(vm.id, 'hibernated');
      assert.equal(again !== 'stale' && again?.desiredState, 'hibernated');
      await assert.rejects(sql`UPDATE vm SET desired_state = 'asleep'`.execute(database.db), 'no other state');
      await vms.delete(vm.id);
    });

    it('migration 0012 goes down to the table 0001 reserved and up again', async () => {
      await snapshotsMigration.down(database.db);
      const columns = await sql<{ column_name: string }>`
        SELECT column_name FROM information_schema.columns WHERE table_name = 'snapshot' AND column_name = 'source'`.execute(database.db);
      assert.equal(columns.rows.length, 0, 'the old shape is back');
      await snapshotsMigration.up(database.db);
      const snapshots = new SqlSnapshotRepo(database.db);
      assert.equal(
        (await snapshots.create(newSnapshot('00000006-5a5a-4000-8000-000000000000', 'again', '11111111-aaaa-4aaa-8aaa-111111111111'))).name,
        'again',
      );
    });

    it('frees an idempotency key whose claim was abandoned or whose answer expired, to one claimant, and prunes both', async () => {
      let now = T0;
      const keys = new SqlIdempotencyRepo(database.db, { abandonedAfterMs: 60_000, keptForMs: 3600_000 }, () => now);
      await sql`DELETE FROM idempotency_key`.execute(database.db);
      assert.deepEqual(await keys.claim('k-crashed', 'h1'), { kind: 'claimed' });
      now = later(59_000);
      assert.deepEqual(await keys.claim('k-crashed', 'h1'), { kind: 'in_progress' }, 'a claim younger than the bound may still finish');
      now = later(61_000);
      const racing = await Promise.all([keys.claim('k-crashed', 'h1'), keys.claim('k-crashed', 'h1'), keys.claim('k-crashed', 'h1')]);
      assert.equal(racing.filter((claim) => claim.kind === 'claimed').length, 1, `exactly one takes the abandoned key over: ${JSON.stringify(racing)}`);

      await keys.complete('k-crashed', 201, { id: 'x' });
      now = later(61_000 + 3599_000);
      assert.equal((await keys.claim('k-crashed', 'h1')).kind, 'replay', 'an answer younger than the bound is replayed');
      now = later(61_000 + 3601_000);
      assert.deepEqual(await keys.claim('k-crashed', 'h2'), { kind: 'claimed' }, 'an expired answer frees its key, even for another request');

      await keys.claim('k-fresh', 'h1');
      await keys.complete('k-fresh', 200, {});
      now = later(61_000 + 3601_000 + 3601_000);
      assert.equal(await keys.prune(), 2, 'the abandoned claim and the expired answer are pruned');
      const left = await sql<{ key: string }>`SELECT key FROM idempotency_key`.execute(database.db);
      assert.deepEqual(left.rows, [], 'nothing is left');
    });
  });
}
