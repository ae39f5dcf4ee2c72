import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../support/nexus-process.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** Several managers on one Postgres: one leads (runs the reconciler); another takes over when it dies. */
describe('two managers on one Postgres', () => {
  let postgres: PostgresServer;
  let managers: TestManager[] = [];

  before(async () => {
    postgres = await startPostgres();
    const databaseUrl = await postgres.createDatabase();
    // A resync far longer than the waits below: a follower's write must reach the leader at once
    // (LISTEN/NOTIFY), not at its next resync. Leadership is still checked every 5 s.
    const first = await startTestManager({ databaseUrl, resyncMs: 60_000 });
    managers = [first, await startTestManager({ databaseUrl, resyncMs: 60_000, secretKeyFile: first.secretKeyFile }, {}, first.adminToken)];
  });
  after(async () => {
    for (const manager of managers) await manager.dispose();
    await postgres?.stop();
  });

  const body = (name: string) => ({ name, vcpu: 1, mem_mib: 128, kernel_path: '/k', rootfs_path: '/r' });
  /** A VM no host can take is failed (no_capacity) by whichever manager reconciles: proof that one does. */
  const reconciled = async (manager: TestManager, name: string) => {
    const vm = (await send(`${manager.url}/v1/vms`, { body: body(name) })).body;
    await eventually(`${name} is reconciled`, async () => (await send(`${manager.url}/v1/vms/${vm.id}`)).body.state === 'failed', 5_000);
  };

  it('exactly one leads, and writes made through the follower are reconciled by the leader at once', async () => {
    await eventually('a leader is chosen', () => managers.some((manager) => manager.isLeader()), 10_000);
    assert.equal(managers.filter((manager) => manager.isLeader()).length, 1);
    const follower = managers.find((manager) => !manager.isLeader());
    assert.ok(follower);
    await reconciled(follower, 'via-follower');
  });

  it('when the leader dies, the other takes over within one leadership check and reconciles', async () => {
    const leader = managers.find((manager) => manager.isLeader());
    const survivor = managers.find((manager) => !manager.isLeader());
    assert.ok(leader && survivor);
    await leader.dispose();
    managers = managers.filter((manager) => manager !== leader);
    await eventually('the survivor leads', () => survivor.isLeader(), 7_000);
    await reconciled(survivor, 'after-failover');
  });
});
