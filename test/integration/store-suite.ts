import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { HostCapacity } from '../../src/contracts/agent-api.js';
import type { Database } from '../../src/manager/adapters/sql/database.js';
import { migrateToLatest } from '../../src/manager/adapters/sql/migrator.js';
import type { HostImage } from '../../src/contracts/image-api.js';
import { SqlHostRepo } from '../../src/manager/adapters/sql/sql-host-repo.js';
import { SqlImageRepo } from '../../src/manager/adapters/sql/sql-image-repo.js';
import { SqlVmRepo } from '../../src/manager/adapters/sql/sql-vm-repo.js';

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

const CORE_TABLES = ['api_token', 'audit', 'host', 'host_image', 'idempotency_key', 'image', 'join_token', 'project', 'snapshot', 'template', 'vm', 'vm_event'];
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

    before(async () => {
      database = await open();
      assert.equal(database.kind, kind);
      await migrateToLatest(database.db);
      repo = new SqlHostRepo(database.db);
    });
    after(async () => {
      await database?.close();
      await cleanup();
    });
    beforeEach(async () => {
      await sql`TRUNCATE join_token, host, vm, vm_event, image, host_image CASCADE`.execute(database.db);
    });

    it('creates every core table, and a second migration run applies nothing', async () => {
      const rows = await sql<{ table_name: string }>`
        SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT LIKE 'kysely_%'
        ORDER BY table_name`.execute(database.db);
      assert.deepEqual(rows.rows.map((row) => row.table_name), CORE_TABLES);
      assert.deepEqual((await migrateToLatest(database.db)).applied, []);
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
      assert.equal(first.reenrolled, false);

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

    it('re-enrolling under an existing name keeps the host id and replaces the credential', async () => {
      await repo.createJoinToken('t1', later(60_000));
      await repo.createJoinToken('t2', later(60_000));
      const first = await repo.enroll('t1', { name: 'same', address: 'a:1', capacity: CAPACITY, credential: 'old' }, later(1));
      const second = await repo.enroll('t2', { name: 'same', address: 'b:2', capacity: CAPACITY, credential: 'new' }, later(2));
      assert.ok(first.ok && second.ok);
      assert.equal(second.host.id, first.host.id);
      assert.equal(second.reenrolled, true);
      const stored = await repo.get(first.host.id);
      assert.equal(stored?.credential, 'new');
      assert.equal(stored?.address, 'b:2');
    });

    it('marks hosts unreachable when their heartbeat is late, and ready again on the next one', async () => {
      await repo.createJoinToken('t', later(60_000));
      const enrolled = await repo.enroll('t', { name: 'h', address: 'a:1', capacity: CAPACITY, credential: 'c' }, later(0));
      assert.ok(enrolled.ok);
      assert.equal(await repo.countReady(), 1);
      assert.deepEqual(await repo.markLateHostsUnreachable(later(-1), later(10)), []);
      assert.deepEqual(await repo.markLateHostsUnreachable(later(5), later(20_000)), ['h']);
      assert.equal((await repo.get(enrolled.host.id))?.status, 'unreachable');
      assert.equal(await repo.countReady(), 0);
      // count(*) is int8: it must come back as a number on both databases.
      assert.equal(typeof (await repo.countReady()), 'number');

      await repo.recordHeartbeat(enrolled.host.id, 'a:2', { ...CAPACITY, vms_running: 3 }, later(21_000));
      const back = await repo.get(enrolled.host.id);
      assert.equal(back?.status, 'ready');
      assert.equal(back?.address, 'a:2');
      assert.equal(back?.capacity.vms_running, 3);
      assert.equal(back?.lastSeenAt.getTime(), later(21_000).getTime());
    });

    it('stores VMs: duplicate names refused, observations become events, allocations summed per host', async () => {
      const vms = new SqlVmRepo(database.db);
      const spec = { vcpu: 2, mem_mib: 256, kernel_path: '/k', initrd_path: null, boot_args: 'x', rootfs_path: '/r', extra_drives: [], nic: true };
      const a = await vms.create({ project: 'default', name: 'a', spec, desiredState: 'running', tags: { team: 'x' }, expiresAt: null });
      assert.equal(a.observedState, 'requested');
      assert.equal(a.project, 'default');
      assert.deepEqual(a.tags, { team: 'x' });
      await assert.rejects(vms.create({ project: 'default', name: 'a', spec, desiredState: 'running', tags: {}, expiresAt: null }), (error: Error & { code?: string }) => error.code === 'conflict');
      const b = await vms.create({ project: 'default', name: 'b', spec: { ...spec, vcpu: 1, mem_mib: 128 }, desiredState: 'stopped', tags: {}, expiresAt: null });

      await vms.observe(a.id, { to: 'starting', message: 'starting' });
      await vms.observe(a.id, { to: 'starting', message: 'again' }); // no change, no event
      await vms.observe(a.id, { to: 'failed', message: 'boom', lastError: { reason: 'vmm_failed', message: 'boom', at: T0.toISOString() } });
      const failed = await vms.get(a.id);
      assert.equal(failed?.observedState, 'failed');
      assert.equal(failed?.lastError?.reason, 'vmm_failed');
      const events = await vms.events(a.id);
      assert.deepEqual(events.map((event) => [event.fromState, event.toState, event.level]), [['requested', 'starting', 'info'], ['starting', 'failed', 'error']]);

      await repo.createJoinToken('vm-t', later(60_000));
      const host = await repo.enroll('vm-t', { name: 'h', address: 'a:1', capacity: CAPACITY, credential: 'c' }, later(0));
      assert.ok(host.ok);
      await vms.setHost(a.id, host.host.id);
      await vms.setHost(b.id, host.host.id);
      assert.deepEqual(await vms.allocations(), [{ hostId: host.host.id, vcpus: 3, memoryMib: 384 }]);

      assert.deepEqual((await vms.list({ limit: 1 })).map((vm) => vm.name), ['a']);
      assert.deepEqual((await vms.list({ limit: 10, afterName: 'a' })).map((vm) => vm.name), ['b']);
      assert.deepEqual((await vms.list({ limit: 10, state: 'failed' })).map((vm) => vm.name), ['a']);
      assert.deepEqual((await vms.list({ limit: 10, namePrefix: '%' })).map((vm) => vm.name), [], 'LIKE wildcards are literal');

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

    it('enforces one name per host and per project at the database level', async () => {
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
      assert.deepEqual((await images.list({ kind: 'rootfs' })).map((image) => image.name), ['v1']);
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
  });
}
