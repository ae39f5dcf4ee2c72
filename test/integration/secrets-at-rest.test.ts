import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { SecretBox } from '../../src/kit/secret-box.js';
import { hashSecret } from '../../src/kit/secret.js';
import { SEALED_PURPOSE } from '../../src/manager/adapters/sql/sealed-purposes.js';
import { type Database, openDatabase } from '../../src/manager/adapters/sql/database.js';
import { MIGRATION_NAMES, migrateTo, migrateToLatest } from '../../src/manager/adapters/sql/migrator.js';
import { verifySecretKey } from '../../src/manager/adapters/sql/secret-key-check.js';
import { SqlHostRepo } from '../../src/manager/adapters/sql/sql-host-repo.js';
import { captureLogger } from '../support/capture-logger.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually, runNexus } from '../support/nexus-process.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';
import { CAPACITY } from './store-suite.js';

/** Every row of every table, each column as text (row_to_json), one string. */
async function dumpDatabase(database: Pick<Database, 'db'>): Promise<string> {
  const tables = await sql<{ table_name: string }>`
    SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`.execute(database.db);
  assert.ok(tables.rows.length >= 10, `the dump covers the schema (${tables.rows.length} tables)`);
  const parts: string[] = [];
  for (const { table_name: table } of tables.rows) {
    const rows = await sql<{ text: string }>`SELECT row_to_json(t)::text AS text FROM ${sql.table(table)} t`.execute(database.db);
    parts.push(`${table}: ${rows.rows.map((row) => row.text).join('\n')}`);
  }
  return parts.join('\n');
}

/** The parts of a secret worth looking for: all of it, and the random part without its prefix (and an API token's id). */
function needlesOf(secret: string): string[] {
  const token = /^nxat_[0-9a-f]{32}_(.+)$/.exec(secret);
  const prefixed = /^nx[a-z]{2}_(.+)$/.exec(secret);
  return [secret, token?.[1] ?? prefixed?.[1] ?? secret];
}

/**
 * No secret at rest: a run that mints API tokens, rotates one, mints join tokens, enrolls agents,
 * rotates a host credential and replays the secret-minting calls with an Idempotency-Key leaves
 * none of the secrets it was shown in any table or in the manager's log. On each database kind.
 */
function defineSecretsAtRest(kind: 'pglite' | 'postgres', start: () => Promise<TestManager>, stop: () => Promise<void>): void {
  describe(`secrets at rest [${kind}]`, () => {
    const dir = tempDir('nexus-secrets-');
    let manager: TestManager;
    let hollow: HollowAgent | undefined;
    const url = (path: string) => `${manager.url}${path}`;
    const shown: Array<{ what: string; secret: string }> = [];
    const keep = (what: string, secret: unknown) => {
      assert.equal(typeof secret, 'string', `${what} was shown`);
      shown.push({ what, secret: secret as string });
    };

    before(async () => {
      manager = await start();
      keep('the bootstrap admin token', manager.adminToken);
    });
    after(async () => {
      await hollow?.agent.close();
      await manager?.dispose();
      await stop();
      dir.remove();
    });

    it('a replayed call that minted a secret answers the resource without it, and says how to get a new one', async () => {
      assert.equal((await send(url('/v1/projects'), { body: { name: 'vault' } })).status, 201);
      for (const role of ['viewer', 'operator']) {
        const minted = await send(url('/v1/tokens'), { body: { owner: `${role}-vault`, role, project: 'vault' } });
        assert.equal(minted.status, 201, JSON.stringify(minted.body));
        keep(`a ${role} token`, minted.body.token);
      }

      const headers = { 'idempotency-key': `mint-${kind}` };
      const first = await send(url('/v1/tokens'), { headers, body: { owner: 'replayed', role: 'operator', project: 'vault' } });
      assert.equal(first.status, 201);
      keep('a token minted with an Idempotency-Key', first.body.token);
      const replay = await send(url('/v1/tokens'), { headers, body: { owner: 'replayed', role: 'operator', project: 'vault' } });
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.equal(replay.body.id, first.body.id, 'the same token');
      assert.equal('token' in replay.body, false, 'its secret is not shown again');
      assert.deepEqual(replay.body.secret_withheld.fields, ['token']);
      assert.match(replay.body.secret_withheld.suggestion, /POST \/v1\/tokens\/:id\/rotate/);
      assert.equal(
        (await send(url('/v1/vms'), { headers: { authorization: `Bearer ${first.body.token}` } })).status,
        200,
        'the first answer holds the working secret',
      );

      const rotateHeaders = { 'idempotency-key': `rotate-${kind}` };
      const rotated = await send(url(`/v1/tokens/${first.body.id}/rotate`), { headers: rotateHeaders, body: { overlap_seconds: 60 } });
      assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
      keep('a rotated token', rotated.body.token);
      const rotatedAgain = await send(url(`/v1/tokens/${first.body.id}/rotate`), { headers: rotateHeaders, body: { overlap_seconds: 60 } });
      assert.equal(rotatedAgain.body.token, undefined, 'a replayed rotation shows no secret');
      assert.deepEqual(rotatedAgain.body.secret_withheld.fields, ['token']);
      assert.equal((await send(url('/v1/vms'), { headers: { authorization: `Bearer ${rotated.body.token}` } })).status, 200, 'and did not rotate again');

      const joinHeaders = { 'idempotency-key': `join-${kind}` };
      const join1 = await send(url('/v1/hosts/join-tokens'), { headers: joinHeaders, body: { ttl_seconds: 600 } });
      assert.equal(join1.status, 201);
      keep('a join token minted with an Idempotency-Key', join1.body.token);
      const join2 = await send(url('/v1/hosts/join-tokens'), { headers: joinHeaders, body: { ttl_seconds: 600 } });
      assert.equal(join2.body.id, join1.body.id);
      assert.equal(join2.body.token, undefined);
      assert.match(join2.body.secret_withheld.suggestion, /Mint another join token/);

      // The agent enrolls with that token, retries with the same key, and gets no second copy.
      const enrollHeaders = { 'idempotency-key': `enroll-${kind}` };
      const enrollBody = { join_token: join1.body.token, name: `direct-${kind}`, address: '127.0.0.1:9', capacity: CAPACITY };
      const enrolled = await send(url('/v1/hosts/enroll'), { anonymous: true, headers: enrollHeaders, body: enrollBody });
      assert.equal(enrolled.status, 201, JSON.stringify(enrolled.body));
      keep('a host credential from an enrollment with an Idempotency-Key', enrolled.body.credential);
      const reenrolled = await send(url('/v1/hosts/enroll'), { anonymous: true, headers: enrollHeaders, body: enrollBody });
      assert.equal(reenrolled.status, 201);
      assert.equal(reenrolled.body.host_id, enrolled.body.host_id);
      assert.equal(reenrolled.body.credential, undefined);
      assert.deepEqual(reenrolled.body.secret_withheld.fields, ['credential']);
    });

    it('an agent enrolled and its credential rotated: credentials are kept hashed and sealed only', async () => {
      const joinToken = (await send(url('/v1/hosts/join-tokens'), { body: {} })).body.token;
      keep('a join token', joinToken);
      keep('an unused join token', (await send(url('/v1/hosts/join-tokens'), { body: { ttl_seconds: 120 } })).body.token);
      hollow = await startHollowAgent(manager.url, joinToken, join(dir.path, 'run'), `sealed-${kind}`);
      const hostId = hollow.agent.identity.enrollment?.hostId ?? '';
      await eventually('the host is ready', async () => (await manager.hosts.get(hostId)).status === 'ready');
      keep('the enrolled host credential', hollow.agent.identity.credential);
      const rotated = await send(url(`/v1/hosts/${hostId}/rotate-credential`), { method: 'POST' });
      assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
      keep('the rotated host credential', hollow.agent.identity.credential);
      const seen = (await manager.hosts.get(hostId)).last_seen_at;
      await eventually('a heartbeat with the new credential', async () => (await manager.hosts.get(hostId)).last_seen_at > seen, 8000);
    });

    it('no secret it was shown is in any table or in the manager log', async () => {
      assert.equal(shown.length, 11, 'every secret the run was shown is collected');
      const dump = await dumpDatabase(manager.database);
      assert.match(dump, /secret_key_check: \{/, 'the dump reaches every table');
      const logs = JSON.stringify(manager.logs);
      assert.ok(manager.logs.length > 20, `the log was captured (${manager.logs.length} lines)`);
      for (const { what, secret } of shown) {
        for (const needle of needlesOf(secret)) {
          assert.ok(!dump.includes(needle), `${what} is in the database`);
          assert.ok(!logs.includes(needle), `${what} is in the manager log`);
        }
      }
    });
  });
}

/**
 * A database from before secrets were sealed keeps its hosts: the migration seals their
 * credentials under the key it is given, and a manager with another key refuses to start.
 */
function defineSealingUpgrade(kind: 'pglite' | 'postgres', open: () => Promise<Database>, stop: () => Promise<void>): void {
  describe(`sealing an older database [${kind}]`, () => {
    let database: Database;
    const secrets = new SecretBox(randomBytes(32));
    before(async () => {
      database = await open();
    });
    after(async () => {
      await database?.close();
      await stop();
    });

    it('seals the credentials stored in the clear, drops the clear columns, and refuses another key', async () => {
      await migrateTo(database.db, { secrets }, '0005-host-credential-rotation');
      const credential = `nxhc_${randomBytes(32).toString('base64url')}`;
      const next = `nxhc_${randomBytes(32).toString('base64url')}`;
      await sql`INSERT INTO host (name, address, status, capacity, credential, next_credential, last_seen_at)
        VALUES ('old-host', '10.0.0.1:9090', 'ready', ${JSON.stringify(CAPACITY)}, ${credential}, ${next}, now())`.execute(database.db);

      const report = await migrateToLatest(database.db, { secrets });
      assert.ok(report.applied.includes('0007-sealed-credentials-and-host-audit'), report.applied.join(', '));
      const dump = await dumpDatabase(database);
      for (const needle of [...needlesOf(credential), ...needlesOf(next)]) assert.ok(!dump.includes(needle), 'no clear credential is left');
      const columns = await sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns WHERE table_name = 'host'`.execute(database.db);
      assert.deepEqual(
        columns.rows
          .map((row) => row.column_name)
          .filter((name) => name.includes('credential'))
          .sort(),
        ['credential_hash', 'credential_rotated_at', 'credential_sealed', 'next_credential_hash', 'next_credential_sealed'],
      );

      const repo = new SqlHostRepo(database.db, secrets);
      const [host] = await repo.list();
      const opened = (sealed: string | undefined) => secrets.open(sealed ?? '', SEALED_PURPOSE.hostCredential);
      assert.equal(opened(host?.credentialSealed), credential, 'the manager still presents the same credential to the agent');
      assert.equal(await repo.completeCredentialRotation(host?.id ?? '', hashSecret(next), new Date()), true, 'the rotation under way survives');
      assert.equal(opened((await repo.get(host?.id ?? ''))?.credentialSealed), next);

      await verifySecretKey(database.db, secrets, '/keys/right');
      await assert.rejects(
        verifySecretKey(database.db, new SecretBox(randomBytes(32)), '/keys/wrong'),
        /sealed secrets do not open with the key in \/keys\/wrong/,
      );
    });
  });
}

const upgradeDir = tempDir('nexus-seal-pglite-');
defineSecretsAtRest(
  'pglite',
  () => startTestManager({ resyncMs: 2000 }),
  async () => undefined,
);
defineSealingUpgrade(
  'pglite',
  () => openDatabase({ dataDir: upgradeDir.path, log: captureLogger().log }),
  async () => upgradeDir.remove(),
);

let postgres: PostgresServer | undefined;
const postgresServer = async () => (postgres ??= await startPostgres());
defineSecretsAtRest(
  'postgres',
  async () => startTestManager({ resyncMs: 2000, databaseUrl: await (await postgresServer()).createDatabase() }),
  async () => undefined,
);
defineSealingUpgrade(
  'postgres',
  async () => openDatabase({ url: await (await postgresServer()).createDatabase(), dataDir: '/nonexistent', log: captureLogger().log }),
  async () => postgres?.stop(),
);

describe('a manager given another key than its database was sealed with', () => {
  const dir = tempDir('nexus-wrong-key-');
  after(() => dir.remove());

  it('refuses to start, naming the key file and what to do; started again with the right key, it runs', async () => {
    const dataDir = join(dir.path, 'data');
    const first = await startTestManager({ dataDir });
    const rightKey = first.secretKeyFile;
    assert.equal(rightKey, join(dataDir, 'secret.key'), 'made in the data dir on first start');
    await first.dispose();
    const wrongKey = join(dir.path, 'other.key');
    writeFileSync(wrongKey, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    await assert.rejects(startTestManager({ dataDir, secretKeyFile: wrongKey }, {}, first.adminToken), (error: Error & { suggestion?: string }) => {
      assert.match(error.message, new RegExp(`the database's sealed secrets do not open with the key in ${wrongKey}`));
      assert.match(error.suggestion ?? '', /NEXUS_SECRET_KEY_FILE/);
      return true;
    });
    const again = await startTestManager({ dataDir }, {}, first.adminToken);
    await again.dispose();
  });
});

/**
 * A key is made only for a database with nothing sealed in it yet. One that holds sealed values
 * and no key file (a manager or `nexus migrate` run elsewhere, another working directory) is
 * refused before anything is migrated or written, and no key is made.
 */
describe('a database that holds sealed secrets, opened without its key file', () => {
  const dir = tempDir('nexus-missing-key-');
  after(() => dir.remove());
  const open = (dataDir: string) => openDatabase({ dataDir, log: captureLogger().log });
  const applied = async (database: Database) =>
    (await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(database.db)).rows.map((row) => row.name);

  it('refuses to start or migrate, naming NEXUS_SECRET_KEY_FILE, before migrating or writing anything, and makes no key', async () => {
    const dataDir = join(dir.path, 'sealed');
    const secrets = new SecretBox(randomBytes(32));
    let database = await open(dataDir);
    // Sealed as of 0007 (its check value); the later migrations are still to run.
    await migrateTo(database.db, { secrets }, '0007-sealed-credentials-and-host-audit');
    const before = { migrations: await applied(database), dump: await dumpDatabase(database) };
    await database.close();
    assert.ok(MIGRATION_NAMES.length > before.migrations.length, 'a migration is left to run');

    const keyFile = join(dir.path, 'elsewhere', 'secret.key');
    await assert.rejects(startTestManager({ dataDir, secretKeyFile: keyFile }), (error: Error & { suggestion?: string }) => {
      assert.match(error.message, new RegExp(`the database holds secrets sealed with a key, and there is no key file at ${keyFile}`));
      assert.match(error.suggestion ?? '', /NEXUS_SECRET_KEY_FILE/);
      return true;
    });
    const migrate = await runNexus(['migrate', '--data-dir', dataDir], { NEXUS_SECRET_KEY_FILE: keyFile });
    assert.equal(migrate.code, 1, migrate.output);
    assert.match(migrate.output, /there is no key file at/);
    assert.match(migrate.output, /NEXUS_SECRET_KEY_FILE/);
    assert.equal(existsSync(keyFile), false, 'no key was made');
    assert.equal(existsSync(join(dataDir, 'secret.key')), false, 'not in the data dir either');

    database = await open(dataDir);
    try {
      assert.deepEqual(await applied(database), before.migrations, 'nothing was migrated');
      assert.equal(await dumpDatabase(database), before.dump, 'nothing was written');
    } finally {
      await database.close();
    }
  });

  it('a database from before sealing (0005) with a host gets its key made and its credentials sealed on the first start', async () => {
    const dataDir = join(dir.path, 'old');
    const database = await open(dataDir);
    await migrateTo(database.db, { secrets: new SecretBox(randomBytes(32)) }, '0005-host-credential-rotation');
    await sql`INSERT INTO host (name, address, status, capacity, credential, last_seen_at)
      VALUES ('old-host', '10.0.0.1:9090', 'unreachable', ${JSON.stringify(CAPACITY)}, ${`nxhc_${randomBytes(32).toString('base64url')}`}, now())`.execute(
      database.db,
    );
    await database.close();
    const manager = await startTestManager({ dataDir });
    try {
      assert.equal(existsSync(join(dataDir, 'secret.key')), true, 'the key was made');
      assert.deepEqual(
        (await manager.hosts.list()).map((host) => host.name),
        ['old-host'],
      );
      assert.ok(
        manager.logs.some((line) => /made a new key that seals secrets/.test(String(line.msg))),
        'and said so',
      );
    } finally {
      await manager.dispose();
    }
  });
});
