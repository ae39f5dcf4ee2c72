import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { MIGRATION_NAMES } from '../../src/manager/adapters/sql/migrator.js';
import { resolveManagerConfig } from '../../src/manager/config.js';
import { type RunningManager, startManager } from '../../src/manager/main.js';
import { captureLogger } from '../support/capture-logger.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { type NexusProcess, eventually, spawnNexus } from '../support/nexus-process.js';
import { freePort } from '../support/ports.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, adminTokenIn, send, startTestManager, useApiToken } from '../support/test-manager.js';

/** The survivor's resync period, and so its leadership period: docs/operations.md says a follower takes the lock "within one period (the resync period, at most 5 s)". */
const SURVIVOR_RESYNC_MS = 1000;
const LEADERSHIP_PERIOD_MS = Math.min(SURVIVOR_RESYNC_MS, 5000);
/**
 * What a loaded 2-core machine may add to that period: the dead leader's session ending (its
 * socket closes with the process, so Postgres ends it at once) and the survivor's late check.
 */
const LOADED_MACHINE_MARGIN_MS = 15_000;

/** The sum of a manager's calls to agents, from its /metrics (`nexus_manager_agent_calls_total`). */
async function agentCalls(url: string): Promise<number> {
  const text = (await send(`${url}/metrics`, { anonymous: true })).body as string;
  return [...text.matchAll(/^nexus_manager_agent_calls_total\{[^}]*\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

/** Heartbeats a manager answered, from its /metrics: the agent's timer, used as a clock. */
async function heartbeats(url: string): Promise<number> {
  const text = (await send(`${url}/metrics`, { anonymous: true })).body as string;
  return [...text.matchAll(/^nexus_manager_http_requests_total\{([^}]*)\} (\d+)$/gm)]
    .filter(([, labels]) => labels?.includes('route="/v1/hosts/:id/heartbeat"') && labels.includes('status="200"'))
    .reduce((sum, match) => sum + Number(match[2]), 0);
}

/**
 * Several managers on one Postgres: exactly one (the holder of the advisory lock) drives agents;
 * when it is killed with -9, another takes over within the stated period.
 */
describe('two managers on one Postgres', () => {
  const dir = tempDir('nexus-leader-');
  let postgres: PostgresServer;
  let leader: NexusProcess | undefined;
  let leaderUrl: string;
  let follower: TestManager;
  let hollow: HollowAgent | undefined;

  before(async () => {
    postgres = await startPostgres();
    const databaseUrl = await postgres.createDatabase();
    const secretKeyFile = join(dir.path, 'secret.key');
    // The leader is a real process, so that it can die as a process does. Its resync is far longer
    // than the waits below: what the follower writes must reach it at once (LISTEN/NOTIFY).
    const port = await freePort();
    leaderUrl = `http://127.0.0.1:${port}`;
    leader = spawnNexus(['manager', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir.path, 'leader')], {
      DATABASE_URL: databaseUrl,
      NEXUS_SECRET_KEY_FILE: secretKeyFile,
      NEXUS_RESYNC_MS: '60000',
      NEXUS_LOG_LEVEL: 'info',
      NEXUS_RATE_LIMIT_ADDRESS: '1000000',
    });
    const spawned = leader;
    await eventually('the first manager leads', () => spawned.output().includes('this manager leads'), 60_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${spawned.output()}`, { cause: error });
    });
    await eventually('the first manager answers', async () => (await fetch(`${leaderUrl}/healthz`).catch(() => undefined))?.ok === true, 30_000);
    const adminToken = adminTokenIn(join(dir.path, 'leader'));
    useApiToken(leaderUrl, adminToken);
    // The agent's heartbeats go to the follower, which survives; they also time the waits below.
    follower = await startTestManager({ databaseUrl, resyncMs: SURVIVOR_RESYNC_MS, heartbeatIntervalMs: 250, secretKeyFile }, {}, adminToken);
    hollow = await startHollowAgent(follower.url, (await follower.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'hollow-1');
    await eventually('the hollow host is ready', async () => (await follower.hosts.list()).some((host) => host.status === 'ready'));
  });
  after(async () => {
    await hollow?.agent.close();
    await leader?.stop();
    await follower?.dispose();
    await postgres?.stop();
    dir.remove();
  });

  const create = async (url: string, name: string): Promise<string> => {
    const created = await send(`${url}/v1/vms`, {
      body: { name, vcpu: 1, mem_mib: 128, kernel_path: hollow?.image.kernel, rootfs_path: hollow?.image.rootfs },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.id as string;
  };
  const running = (ids: string[]) =>
    eventually(`${ids.length} VMs run`, async () => {
      for (const id of ids) if ((await send(`${follower.url}/v1/vms/${id}`)).body.state !== 'running') return false;
      return true;
    });

  it('only the leader drives the agent: the follower makes no call to it, though the writes made through it run at once', async () => {
    assert.equal(follower.isLeader(), false, 'the second manager follows');
    // Created through the follower: they reach the leader over LISTEN/NOTIFY (its resync is 60 s away).
    const ids = [await create(follower.url, 'via-follower-1'), await create(follower.url, 'via-follower-2'), await create(leaderUrl, 'via-leader')];
    await running(ids);
    assert.ok((await agentCalls(leaderUrl)) >= ids.length * 3, 'the leader placed, ensured and started each VM on the agent');
    // Several of the follower's resync periods pass (timed by the agent's heartbeats, every 250 ms):
    // a follower that reconciled would have asked the agent about each VM at each of them.
    const from = await heartbeats(follower.url);
    await eventually('three follower resync periods pass', async () => (await heartbeats(follower.url)) >= from + (3 * SURVIVOR_RESYNC_MS) / 250 + 1);
    assert.equal(await agentCalls(follower.url), 0, 'the follower made no call to the agent');
    assert.equal(follower.isLeader(), false, 'and still follows');
  });

  it('when the leader is killed with -9, the follower leads within one leadership period (plus a margin) and drives the agent', async () => {
    const spawned = leader;
    assert.ok(spawned, 'the leader runs');
    spawned.child.kill('SIGKILL');
    await spawned.exited;
    await eventually('the follower leads', () => follower.isLeader(), LEADERSHIP_PERIOD_MS + LOADED_MACHINE_MARGIN_MS);
    const id = await create(follower.url, 'after-failover');
    await running([id]);
    assert.ok((await agentCalls(follower.url)) >= 3, 'the new leader placed, ensured and started the VM on the agent');
  });
});

/** Managers that start together on one empty database take turns: one migrates, one first admin token. */
describe('managers starting at once on an empty database', () => {
  const ROUNDS = 3;

  it(`Postgres: ${ROUNDS} times two managers at once apply each migration once and mint exactly one first admin token`, async () => {
    const postgres = await startPostgres();
    const dir = tempDir('nexus-start-race-');
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const databaseUrl = await postgres.createDatabase();
        const secretKeyFile = join(dir.path, `secret-${round}.key`);
        const starting = [0, 1].map((n) => {
          const { log, lines } = captureLogger(`manager-${n}`);
          const config = resolveManagerConfig({ listen: '127.0.0.1:0', dataDir: join(dir.path, `${round}-${n}`), mode: 'dev', databaseUrl, secretKeyFile }, {});
          return { lines, manager: startManager(config, log) };
        });
        const settled = await Promise.allSettled(starting.map(({ manager }) => manager));
        const managers = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
        try {
          assert.deepEqual(
            settled.map((result) => result.status),
            ['fulfilled', 'fulfilled'],
            `round ${round}: both start (${settled.map((result) => (result.status === 'rejected' ? String(result.reason) : 'ok')).join('; ')})`,
          );
          const applied = starting.flatMap(({ lines }) => lines.filter((line) => line.msg === 'database ready').flatMap((line) => line.applied as string[]));
          assert.deepEqual([...applied].sort(), [...MIGRATION_NAMES].sort(), `round ${round}: each migration applied once, by one of them`);
          assert.equal(
            managers.filter((manager: RunningManager) => manager.bootstrapAdminToken !== undefined).length,
            1,
            `round ${round}: one of them minted the first admin token`,
          );
          const minted = starting.flatMap(({ lines }) => lines.filter((line) => line.event === 'bootstrap_admin_token'));
          assert.equal(minted.length, 1, `round ${round}: one says so in its log`);
          const client = new pg.Client({ connectionString: databaseUrl });
          await client.connect();
          try {
            const tokens = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM api_token');
            assert.equal(tokens.rows[0]?.n, 1, `round ${round}: one token in the database`);
            const migrations = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM kysely_migration');
            assert.equal(migrations.rows[0]?.n, MIGRATION_NAMES.length, `round ${round}: each migration recorded once`);
          } finally {
            await client.end();
          }
        } finally {
          for (const manager of managers) await manager.close();
        }
      }
    } finally {
      await postgres.stop();
      dir.remove();
    }
  });

  it('embedded database: of two `nexus manager` processes started at once on one empty data dir, one serves and the other is refused by the dir lock', async () => {
    const dir = tempDir('nexus-start-race-');
    const ports = [await freePort(), await freePort()];
    const processes = ports.map((port) =>
      spawnNexus(['manager', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', dir.path], { NEXUS_LOG_LEVEL: 'info' }),
    );
    try {
      // The refused one exits; the other serves until stopped.
      const refused = await Promise.race(processes.map(async (process, n) => ({ n, exit: await process.exited })));
      const other = processes[1 - refused.n];
      assert.ok(other, 'two processes');
      assert.equal(refused.exit.code, 1, processes[refused.n]?.output());
      assert.match(processes[refused.n]?.output() ?? '', /is locked by process/);
      const url = `http://127.0.0.1:${ports[1 - refused.n]}`;
      await eventually('the other serves', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 60_000);
      const listed = await send(`${url}/v1/tokens`, { headers: { authorization: `Bearer ${adminTokenIn(dir.path)}` } });
      assert.equal(listed.status, 200, JSON.stringify(listed.body));
      assert.equal(listed.body.items.length, 1, 'one first admin token');
      assert.equal((other.output().match(/The first admin token/g) ?? []).length, 1, 'shown once, by the one that serves');
      assert.doesNotMatch(processes[refused.n]?.output() ?? '', /The first admin token/);
    } finally {
      for (const process of processes) await process.stop();
      dir.remove();
    }
  });
});
