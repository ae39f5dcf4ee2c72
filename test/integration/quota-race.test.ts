// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

const AT_ONCE = 8;
const ROUNDS = 3;

/** Each quota, the VM every racer asks for, and how many of them fit. */
const CASES = [
  { quota: 'max_vms', limit: 1, vcpu: 1, memMib: 128, fits: 1 },
  { quota: 'max_vcpus', limit: 5, vcpu: 2, memMib: 128, fits: 2 },
  { quota: 'max_memory_mib', limit: 300, vcpu: 1, memMib: 128, fits: 2 },
] as const;

/**
 * Quotas hold under concurrency: creates fired at once into a project with room for a few must
 * leave exactly that many VMs, on each database the manager runs on (the check and the insert are
 * one step; two separate ones let every racer see the same free room).
 */
function defineQuotaRace(kind: 'pglite' | 'postgres', start: () => Promise<TestManager>, stop: () => Promise<void>): void {
  describe(`quotas under concurrent creates [${kind}]`, () => {
    let manager: TestManager;
    const url = (path: string) => `${manager.url}${path}`;

    before(async () => {
      manager = await start();
    });
    after(async () => {
      await manager?.dispose();
      await stop();
    });

    for (const { quota, limit, vcpu, memMib, fits } of CASES) {
      it(`${quota} ${limit}: ${AT_ONCE} creates at once leave exactly ${fits} VMs, ${ROUNDS} rounds in a row`, async () => {
        for (let round = 1; round <= ROUNDS; round++) {
          const project = `race-${quota.replaceAll('_', '-')}-${round}`;
          assert.equal((await send(url('/v1/projects'), { body: { name: project, [quota]: limit } })).status, 201, `project ${project}`);
          const answers = await Promise.all(
            Array.from({ length: AT_ONCE }, (_, index) =>
              send(url('/v1/vms'), {
                body: { name: `vm-${index}`, project, vcpu, mem_mib: memMib, kernel_path: '/k', rootfs_path: '/r', desired_state: 'stopped' },
              }),
            ),
          );
          const created = answers.filter((answer) => answer.status === 201);
          const refused = answers.filter((answer) => answer.status !== 201);
          for (const answer of refused) {
            assertErrorContract(answer, 403, 'quota_exceeded');
            assert.match(answer.body.fault_message, new RegExp(`^project ${project} is at its quota: ${quota} ${limit} `), 'the refusal names the quota');
            assert.ok(answer.body.suggestion, 'the refusal suggests a way out');
          }
          const stored = ((await send(url('/v1/vms?limit=500'))).body.items as Array<{ project: string }>).filter((vm) => vm.project === project);
          assert.equal(stored.length, fits, `round ${round}: ${stored.length} VMs stored in ${project}, the quota has room for ${fits}`);
          assert.equal(created.length, fits, `round ${round}: ${created.length} creates answered 201`);
        }
      });
    }
  });
}

// A limit on writes far above what the rounds send: the quota, not the rate limit, must refuse.
const options = { resyncMs: 60_000, writesPerMinute: 10_000 };

defineQuotaRace(
  'pglite',
  () => startTestManager(options),
  async () => undefined,
);

let postgres: PostgresServer | undefined;
defineQuotaRace(
  'postgres',
  async () => {
    postgres = await startPostgres();
    return startTestManager({ ...options, databaseUrl: await postgres.createDatabase() });
  },
  async () => postgres?.stop(),
);
