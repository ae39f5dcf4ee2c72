/**
 * The VM API under load, on hollow hosts (the real agent code over in-memory VMMs): p50/p95/p99 of
 * the create/get/list/stop/delete handlers, and the time to converge BENCH_VMS VMs (default 1000)
 * on 10 hollow agents after all 10 restart at once. On PGlite and on Postgres. Prints; asserts nothing.
 * The hollow agents run in a child process of their own (hollow-agents-process.ts), at a lower CPU
 * priority, so this one only generates load and its latencies are not skewed by the agents' work.
 */
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'undici';
import { eventually, spawnNexus } from '../test/support/nexus-process.js';
import { freePort } from '../test/support/ports.js';
import { startPostgres } from '../test/support/postgres-server.js';
import { tempDir } from '../test/support/temp-dir.js';
import { forkHollowAgents } from './hollow-agents-process.js';
import { ManagerCaller } from './manager-caller.js';

const VMS = Number(process.env.BENCH_VMS ?? 1000);
const LATENCY_VMS = Math.min(VMS, 300);
const WARMUP_VMS = 50;
const CONCURRENCY = 10;
const AGENTS = 10;
const dispatcher = new Agent({ connections: CONCURRENCY * 2 });

/** The admin token of the manager being measured (a dev-mode manager saves it in its data dir). */
const caller = new ManagerCaller(dispatcher);
const call = caller.call.bind(caller);

/** Runs `work` for every item with CONCURRENCY in flight; answers each call's latency. */
async function pool<T>(items: T[], work: (item: T) => Promise<number>): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) latencies.push(await work(items[next++] as T));
    }),
  );
  return latencies;
}

function percentiles(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN).toFixed(1);
  return `p50 ${at(50).padStart(6)}  p95 ${at(95).padStart(6)}  p99 ${at(99).padStart(6)} ms  (n=${values.length})`;
}

async function runningCount(api: string): Promise<number> {
  let count = 0;
  let cursor: string | null = null;
  do {
    const page: { json: { items: unknown[]; next_cursor: string | null } } = await call(
      'GET',
      `${api}/v1/vms?state=running&limit=500${cursor ? `&cursor=${cursor}` : ''}`,
    );
    count += page.json.items.length;
    cursor = page.json.next_cursor;
  } while (cursor);
  return count;
}

async function measure(database: string, env: Record<string, string>): Promise<void> {
  const dir = tempDir('nexus-bench-api-');
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const unlimited = { NEXUS_RATE_LIMIT_READS: '100000000', NEXUS_RATE_LIMIT_WRITES: '100000000', NEXUS_RATE_LIMIT_ADDRESS: '100000000' };
  const manager = spawnNexus(['manager', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir.path, 'data')], {
    NEXUS_LOG_LEVEL: 'warn',
    NEXUS_RESYNC_MS: '2000',
    ...unlimited,
    ...env,
  });
  const agents = forkHollowAgents();
  try {
    await eventually('the manager answers', async () => (await fetch(`${api}/healthz`).catch(() => undefined))?.ok === true, 60_000);
    caller.useToken(readFileSync(join(dir.path, 'data', 'admin.token'), 'utf8').trim());
    // One image store shared by every agent (each run dir's images/ links to it), so a VM's paths
    // are valid on whichever host the scheduler picks.
    const shared = join(dir.path, 'images');
    mkdirSync(shared, { recursive: true });
    const spec = async (i: number) => {
      const token = (await call('POST', `${api}/v1/hosts/join-tokens`, {})).json.token;
      const runDir = join(dir.path, `agent-${i}`);
      mkdirSync(runDir, { recursive: true });
      symlinkSync(shared, join(runDir, 'images'));
      return { token, runDir, name: `hollow-${i}` };
    };
    const image = await agents.start(api, await Promise.all(Array.from({ length: AGENTS }, (_, i) => spec(i))));
    const body = (name: string) => ({ name, vcpu: 1, mem_mib: 128, kernel_path: image.kernel, rootfs_path: image.rootfs });
    /** Creates `count` VMs, gets, lists, stops and deletes them; answers each handler's latencies once they are gone. */
    const lifecycle = async (prefix: string, count: number) => {
      const names = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
      const ids: string[] = [];
      const create = await pool(names, async (name) => {
        const result = await call('POST', `${api}/v1/vms`, body(name));
        ids.push(result.json.id);
        return result.ms;
      });
      const get = await pool(ids, async (id) => (await call('GET', `${api}/v1/vms/${id}`)).ms);
      const list = await pool(ids.slice(0, 100), async () => (await call('GET', `${api}/v1/vms?limit=100`)).ms);
      const stop = await pool(ids, async (id) => (await call('POST', `${api}/v1/vms/${id}/stop`)).ms);
      const remove = await pool(ids, async (id) => (await call('DELETE', `${api}/v1/vms/${id}`)).ms);
      await eventually(`the ${prefix} VMs are gone`, async () => (await call('GET', `${api}/v1/vms?limit=1`)).json.items.length === 0, 120_000);
      return { create, get, list, stop, delete: remove };
    };
    // Not measured: the first calls of each route pay one-off costs (JIT, response serializers'
    // validators compiled on first use, database connections opened) that are no handler's steady latency.
    await lifecycle('warm', WARMUP_VMS);
    const latencies = await lifecycle('lat', LATENCY_VMS);
    console.log(`\nVM API handlers on ${database}, ${CONCURRENCY} clients, ${AGENTS} hollow hosts (VMM work excluded)`);
    for (const [name, values] of Object.entries(latencies)) console.log(`  ${name.padEnd(7)} ${percentiles(values)}`);

    const many = Array.from({ length: VMS }, (_, i) => `conv-${i}`);
    let started = performance.now();
    await pool(many, async (name) => (await call('POST', `${api}/v1/vms`, body(name))).ms);
    await eventually(`${VMS} VMs run`, async () => (await runningCount(api)) === VMS, 600_000);
    const firstConverge = performance.now() - started;

    started = performance.now();
    await agents.restart();
    await eventually(`${VMS} VMs run again`, async () => (await agents.processes()) === VMS && (await runningCount(api)) === VMS, 600_000);
    const reconverge = performance.now() - started;
    console.log(
      `  ${VMS} VMs: running ${(firstConverge / 1000).toFixed(1)} s after their creates; ${(reconverge / 1000).toFixed(1)} s to converge again after all ${AGENTS} agents restarted at once`,
    );
  } finally {
    await agents.close().catch(() => undefined);
    await agents.stop();
    await manager.stop();
    dir.remove();
  }
}

const postgres = await startPostgres();
try {
  await measure('pglite', {});
  await measure('postgres', { DATABASE_URL: await postgres.createDatabase() });
} finally {
  await postgres.stop();
  await dispatcher.close();
}
