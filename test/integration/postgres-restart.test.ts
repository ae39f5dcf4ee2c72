import assert from 'node:assert/strict';
import { type Socket, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { AdvisoryLockLeadership } from '../../src/manager/adapters/sql/advisory-lock-leadership.js';
import { type Database, openDatabase } from '../../src/manager/adapters/sql/database.js';
import { PgWakeChannel } from '../../src/manager/adapters/sql/pg-wake-channel.js';
import { assertErrorContract } from '../support/error-contract.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';
import { startWriters } from '../support/vm-writers.js';

type Answer = Awaited<ReturnType<typeof send>>;

// One server for both suites: initdb is the slow part.
let postgres: PostgresServer;
before(async () => {
  // Commits reach the server's kernel before they are acknowledged, so an immediate stop (a
  // crash of the server) may lose none: the test holds the manager to "nothing acknowledged is lost".
  postgres = await startPostgres({ durableCommits: true });
});
after(async () => {
  await postgres?.stop();
});

/** Postgres stopped and started again under the manager: it degrades to 503s, then recovers by itself. */
describe('Postgres restarted under write load', () => {
  const dir = tempDir('nexus-pg-restart-');
  let databaseUrl: string;
  let manager: TestManager;
  let hollow: HollowAgent;

  before(async () => {
    databaseUrl = await postgres.createDatabase();
    // A short resync and leadership period, so the reconciler, the orphan collector and the
    // leadership check all run while the server is down.
    manager = await startTestManager({ databaseUrl, resyncMs: 500, writesPerMinute: 100_000, readsPerMinute: 100_000 }, { NEXUS_VCPU_OVERCOMMIT: '64' });
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'hollow-pg');
    await eventually('the hollow host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
    await eventually('the manager leads', () => manager.isLeader(), 10_000);
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  for (const mode of ['fast', 'immediate'] as const) {
    it(`${mode === 'fast' ? 'a fast' : 'an immediate'} stop: 503 with Retry-After while it is down, every acknowledged write kept, leadership and the reconciler back by themselves`, async () => {
      // Paced, so a run stays within the hollow host's capacity.
      const acknowledged = new Map<string, string>();
      const writers = startWriters(undefined, manager.url, manager.adminToken, mode, 2, acknowledged, { image: hollow.image, paceMs: 100 });
      try {
        await eventually('writes are acknowledged', () => acknowledged.size >= 5, 10_000);
        const beforeStop = acknowledged.size;
        await postgres.shutDown(mode);

        const ready = await send(`${manager.url}/readyz`);
        assertErrorContract(ready, 503, 'not_ready');
        assert.match(ready.body.fault_message, /database unreachable/);
        await eventually('a write is refused', () => writers.refused.length > 0, 10_000);
        const refusedWrite = writers.refused[0] as Answer;
        assertErrorContract(refusedWrite, 503, 'database_unavailable');
        assert.ok(Number(refusedWrite.headers.get('retry-after')) > 0, `Retry-After on a refused write: ${refusedWrite.headers.get('retry-after')}`);
        assert.equal(refusedWrite.body.retry_after, Number(refusedWrite.headers.get('retry-after')));
        const read = await send(`${manager.url}/v1/vms?limit=5`);
        assertErrorContract(read, 503, 'database_unavailable');
        assert.ok(read.headers.get('retry-after'), 'Retry-After on a refused read');
        await eventually('the manager no longer leads (its lock went with its session)', () => !manager.isLeader(), 10_000);

        await postgres.startAgain();
        await eventually('/readyz answers 200 again', async () => (await send(`${manager.url}/readyz`)).status === 200, 20_000);
        await eventually('the manager leads again', () => manager.isLeader(), 10_000);
        const afterStart = acknowledged.size;
        await eventually('writes are acknowledged again', () => acknowledged.size >= afterStart + 5, 20_000);
        assert.ok(beforeStop >= 5, 'writes were acknowledged before the stop');
      } finally {
        await writers.stop();
      }

      const other = writers.refused.filter((answer) => answer.status !== 503 || answer.body?.error !== 'database_unavailable');
      assert.deepEqual(
        other.map((answer) => [answer.status, answer.body]),
        [],
        'every refused write was a 503 database_unavailable',
      );
      assert.equal(writers.unanswered(), 0, 'the manager answered every write');
      for (const [name, id] of acknowledged) {
        const found = await send(`${manager.url}/v1/vms/${id}`);
        assert.equal(found.status, 200, `acknowledged VM ${name} is there: ${JSON.stringify(found.body)}`);
        assert.equal(found.body.name, name);
      }
      // The reconciler resumed: every VM, acknowledged before, during or after the outage, runs.
      await eventually(
        `all ${acknowledged.size} acknowledged VMs run`,
        async () => {
          const states = await Promise.all([...acknowledged.values()].map(async (id) => (await send(`${manager.url}/v1/vms/${id}`)).body.state));
          return states.every((state) => state === 'running');
        },
        30_000,
      );
    });
  }
});

/**
 * A TCP relay to Postgres that can go silent as a network partition does: `partition` drops every
 * byte both ways and sends no FIN or reset. `heal` ends the server side of the connections the
 * partition caught (as the server's TCP eventually does) and relays new connections again; their
 * client side stays open and silent, as on a client that never heard of it.
 */
async function startRelay(targetPort: number) {
  const pairs: { client: Socket; server: Socket; cut: boolean }[] = [];
  let partitioned = false;
  const relay = createServer({ allowHalfOpen: true }, (client) => {
    const server = connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const pair = { client, server, cut: partitioned };
    pairs.push(pair);
    client.on('data', (chunk) => void (pair.cut || server.write(chunk)));
    server.on('data', (chunk) => void (pair.cut || client.write(chunk)));
    for (const socket of [client, server]) socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as { port: number }).port,
    partition: () => {
      partitioned = true;
      for (const pair of pairs) pair.cut = true;
    },
    heal: () => {
      partitioned = false;
      for (const pair of pairs) if (pair.cut) pair.server.destroy();
    },
    close: async () => {
      for (const pair of pairs) for (const socket of [pair.client, pair.server]) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    },
  };
}

/** The two connections of its own a manager keeps on Postgres, each lost to a restart and re-made. */
describe('Postgres connections a manager keeps open, after a restart', () => {
  const log = pino({ level: 'silent' });
  let databaseUrl: string;
  let database: Database;

  before(async () => {
    databaseUrl = await postgres.createDatabase();
    database = await openDatabase({ url: databaseUrl, dataDir: '/nonexistent', log });
  });
  after(async () => {
    await database?.close();
  });

  it('the advisory lock is lost with its session and taken again', async () => {
    const leadership = new AdvisoryLockLeadership(databaseUrl, 200, log);
    leadership.start();
    try {
      await eventually('it leads', () => leadership.isLeader(), 5_000);
      await postgres.shutDown('immediate');
      await eventually('it no longer leads', () => !leadership.isLeader(), 5_000);
      await postgres.startAgain();
      await eventually('it leads again', () => leadership.isLeader(), 10_000);
    } finally {
      await leadership.stop();
    }
  });

  it('a leader whose server goes silent (a partition: no reset) stops leading, and leads again once it heals', async () => {
    const port = new URL(databaseUrl).port;
    const relay = await startRelay(Number(port));
    const leadership = new AdvisoryLockLeadership(databaseUrl.replace(`:${port}/`, `:${relay.port}/`), 200, log);
    leadership.start();
    try {
      await eventually('it leads', () => leadership.isLeader(), 5_000);
      relay.partition();
      // Its check gets no answer: without a timeout it would wait on TCP for many minutes, leading all along.
      await eventually('it no longer leads', () => !leadership.isLeader(), 15_000);
      relay.heal();
      // The old session is gone on the server, so the lock is free again.
      await eventually('it leads again', () => leadership.isLeader(), 15_000);
    } finally {
      await relay.close();
      await leadership.stop();
    }
  });

  it('the LISTEN connection is re-opened, and wakes arrive again', async () => {
    const woken: string[] = [];
    const channel = new PgWakeChannel(databaseUrl, database.db, log, 200);
    await channel.start((id) => woken.push(id));
    const id = '5d0c6a3e-94c4-4d5f-9f55-3f6c1c2a7b10';
    try {
      channel.publish(id, true);
      await eventually('a wake arrives', () => woken.includes(id), 5_000);
      await postgres.shutDown('fast');
      await postgres.startAgain();
      woken.length = 0;
      // Published until one arrives: a wake sent before the channel listens again is lost by design.
      await eventually(
        'a wake arrives after the restart',
        () => {
          channel.publish(id, true);
          return woken.includes(id);
        },
        10_000,
      );
    } finally {
      await channel.stop();
    }
  });
});
