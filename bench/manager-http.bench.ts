/**
 * Manager HTTP throughput and latency on the embedded database and on PostgreSQL, side by side:
 * `npm run bench`. The cost of authentication (an unauthenticated health check against an
 * authenticated read), a read (GET /v1/hosts, 10 hosts registered) and a write (minting a join
 * token), each under a loopback load of 10 connections. Rate limits are lifted for the run.
 * Prints numbers; asserts nothing.
 */
import autocannon from 'autocannon';
import { CAPACITY } from '../test/integration/store-suite.js';
import { freePort } from '../test/support/ports.js';
import { startPostgres } from '../test/support/postgres-server.js';
import { tempDir } from '../test/support/temp-dir.js';
import { type NexusProcess, eventually, spawnNexus } from '../test/support/nexus-process.js';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 8);
const CONNECTIONS = 10;

interface Row {
  database: string;
  scenario: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function startManager(env: Record<string, string>): Promise<{ url: string; process: NexusProcess; auth: Record<string, string> }> {
  const port = await freePort();
  const unlimited = { NEXUS_RATE_LIMIT_READS: '100000000', NEXUS_RATE_LIMIT_WRITES: '100000000', NEXUS_RATE_LIMIT_ADDRESS: '100000000' };
  const manager = spawnNexus(['manager', '--listen', `127.0.0.1:${port}`], { NEXUS_LOG_LEVEL: 'warn', ...unlimited, ...env });
  const url = `http://127.0.0.1:${port}`;
  await eventually('the manager answers', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 60_000);
  // A fresh database: the manager shows its first admin token once, on standard error.
  const token = /nxat_[0-9a-f]{32}_[A-Za-z0-9_-]{43}/.exec(manager.output())?.[0];
  if (!token) throw new Error(`no admin token in the manager's output:\n${manager.output()}`);
  return { url, process: manager, auth: { authorization: `Bearer ${token}` } };
}

async function seedHosts(url: string, auth: Record<string, string>, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const { token } = (await (
      await fetch(`${url}/v1/hosts/join-tokens`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: '{}' })
    ).json()) as { token: string };
    await fetch(`${url}/v1/hosts/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ join_token: token, name: `bench-${i}`, address: `127.0.0.1:${10000 + i}`, capacity: CAPACITY }),
    });
  }
}

async function load(database: string, scenario: string, options: autocannon.Options): Promise<Row> {
  await autocannon({ ...options, duration: 1, connections: CONNECTIONS }); // warm-up
  const result = await autocannon({ ...options, duration: DURATION_S, connections: CONNECTIONS });
  return {
    database,
    scenario,
    rps: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx,
  };
}

async function measure(database: string, env: Record<string, string>): Promise<Row[]> {
  const { url, process, auth } = await startManager(env);
  try {
    await seedHosts(url, auth, 10);
    return [
      await load(database, 'GET /healthz (no auth)', { url: `${url}/healthz` }),
      await load(database, 'GET /v1/projects (token)', { url: `${url}/v1/projects`, headers: auth }),
      await load(database, 'GET /v1/hosts', { url: `${url}/v1/hosts`, headers: auth }),
      await load(database, 'POST /v1/hosts/join-tokens', {
        url: `${url}/v1/hosts/join-tokens`,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: '{"ttl_seconds":600}',
      }),
    ];
  } finally {
    await process.stop();
  }
}

const dir = tempDir('nexus-bench-');
const postgres = await startPostgres();
try {
  const rows = [...(await measure('pglite', { NEXUS_DATA_DIR: dir.path })), ...(await measure('postgres', { DATABASE_URL: await postgres.createDatabase() }))];
  console.log(`\nmanager HTTP, ${CONNECTIONS} connections, ${DURATION_S} s per row (loopback, autocannon)\n`);
  console.log('scenario                     database   req/s   p50 ms  p99 ms  errors');
  for (const scenario of [...new Set(rows.map((row) => row.scenario))]) {
    for (const row of rows.filter((entry) => entry.scenario === scenario)) {
      console.log(
        `${row.scenario.padEnd(28)} ${row.database.padEnd(9)} ${String(row.rps).padStart(6)}  ${String(row.p50).padStart(6)}  ${String(row.p99).padStart(6)}  ${String(row.errors).padStart(6)}`,
      );
    }
    const [pglite, pg] = [
      rows.find((r) => r.scenario === scenario && r.database === 'pglite'),
      rows.find((r) => r.scenario === scenario && r.database === 'postgres'),
    ];
    if (pglite && pg) console.log(`${''.padEnd(28)} ratio postgres/pglite: ${(pg.rps / Math.max(1, pglite.rps)).toFixed(2)}x req/s\n`);
  }
  for (const database of ['pglite', 'postgres']) {
    const open = rows.find((row) => row.database === database && row.scenario.startsWith('GET /healthz'));
    const authed = rows.find((row) => row.database === database && row.scenario.startsWith('GET /v1/projects'));
    if (open && authed) console.log(`cost of auth on ${database}: p99 ${authed.p99} ms with a token (a 1-row read) vs ${open.p99} ms for the health check`);
  }
} finally {
  await postgres.stop();
  dir.remove();
}
