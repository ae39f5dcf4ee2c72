/**
 * A churn soak: VMs created, started, stopped and deleted without pause against one manager and
 * one hollow host (the real agent code over in-memory VMMs), for BENCH_CHURN_MINUTES (default 10).
 * Prints the manager's and the agent's resident memory and V8 heap at the start, every minute and
 * at the end, with the operations done and failed; a leak shows as growth the churn does not
 * explain. The embedded database by default; BENCH_CHURN_POSTGRES=1 runs on a throwaway Postgres.
 * Prints; asserts nothing.
 */
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'undici';
import { eventually, spawnNexus } from '../test/support/nexus-process.js';
import { freePort } from '../test/support/ports.js';
import { type PostgresServer, startPostgres } from '../test/support/postgres-server.js';
import { tempDir } from '../test/support/temp-dir.js';
import { forkHollowAgents } from './hollow-agents-process.js';
import { ManagerCaller } from './manager-caller.js';

const DURATION_MS = Number(process.env.BENCH_CHURN_MINUTES ?? 10) * 60_000;
const REPORT_EVERY_MS = Math.min(60_000, DURATION_MS);
/** VMs churned at once, each by its own loop. */
const WORKERS = 4;
/** Seconds each call waits for the state it asked for. */
const WAIT_S = 30;
const OPS = ['create', 'start', 'stop', 'delete'] as const;
type Op = (typeof OPS)[number];

const dispatcher = new Agent({ connections: WORKERS * 2 });
const caller = new ManagerCaller(dispatcher);
const call = caller.call.bind(caller);

/** The manager's own figures, from the process metrics on its /metrics. */
async function managerMemory(api: string): Promise<{ rss: number; heapUsed: number; heapTotal: number }> {
  const text = (await call('GET', `${api}/metrics`)).json as string;
  const metric = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: metric('process_resident_memory_bytes'), heapUsed: metric('nodejs_heap_size_used_bytes'), heapTotal: metric('nodejs_heap_size_total_bytes') };
}

function bytesIn(path: string): number {
  let total = 0;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    total += entry.isDirectory() ? bytesIn(full) : statSync(full).size;
  }
  return total;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1).padStart(6)} MiB`;

async function soak(database: string, env: Record<string, string>, postgres: PostgresServer | undefined): Promise<void> {
  const dir = tempDir('nexus-bench-churn-');
  const dataDir = join(dir.path, 'data');
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const unlimited = { NEXUS_RATE_LIMIT_READS: '100000000', NEXUS_RATE_LIMIT_WRITES: '100000000', NEXUS_RATE_LIMIT_ADDRESS: '100000000' };
  const manager = spawnNexus(['manager', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    NEXUS_LOG_LEVEL: 'warn',
    NEXUS_RESYNC_MS: '2000',
    ...unlimited,
    ...env,
  });
  const agents = forkHollowAgents();
  const done: Record<Op, number> = { create: 0, start: 0, stop: 0, delete: 0 };
  const failed: Record<Op, number> = { create: 0, start: 0, stop: 0, delete: 0 };
  const lastError: Partial<Record<Op, string>> = {};
  try {
    await eventually('the manager answers', async () => (await fetch(`${api}/healthz`).catch(() => undefined))?.ok === true, 120_000);
    caller.useToken(readFileSync(join(dataDir, 'admin.token'), 'utf8').trim());
    const runDir = join(dir.path, 'agent');
    mkdirSync(runDir, { recursive: true });
    const token = (await call('POST', `${api}/v1/hosts/join-tokens`, {})).json.token;
    const image = await agents.start(api, [{ token, runDir, name: 'hollow-churn' }]);
    await eventually('the hollow host is ready', async () => (await call('GET', `${api}/readyz`)).status === 200, 60_000);

    const started = performance.now();
    const report = async (label: string) => {
      const m = await managerMemory(api);
      const a = await agents.memory();
      const minutes = ((performance.now() - started) / 60_000).toFixed(1).padStart(5);
      const ops = OPS.map((op) => `${op} ${done[op]}${failed[op] ? ` (${failed[op]} failed)` : ''}`).join(', ');
      const size = postgres ? '' : `  db ${mib(bytesIn(join(dataDir, 'pglite')))}`;
      console.log(
        `  ${label.padEnd(5)} ${minutes} min  manager rss ${mib(m.rss)} heap ${mib(m.heapUsed)} / ${mib(m.heapTotal)}  |  agent rss ${mib(a.rss)} heap ${mib(a.heapUsed)} / ${mib(a.heapTotal)}${size}  |  ${ops}`,
      );
    };
    console.log(
      `\nChurn soak on ${database}: ${WORKERS} VMs at a time created, started, stopped and deleted for ${(DURATION_MS / 60_000).toFixed(1)} min on one hollow host`,
    );
    await report('start');

    /**
     * One call, counted as done when it did what it asked (a 2xx and, where one is named, the
     * observed state) and as failed otherwise; answers the body of any 2xx.
     */
    const attempt = async (op: Op, method: 'POST' | 'DELETE', url: string, body?: unknown, state?: string): Promise<any> => {
      try {
        const answer = await call(method, url, body);
        const ok = answer.status >= 200 && answer.status < 300 && (!state || answer.json?.state === state);
        if (ok) done[op]++;
        else {
          failed[op]++;
          lastError[op] = `${answer.status} ${JSON.stringify(answer.json).slice(0, 200)}`;
        }
        return answer.status >= 200 && answer.status < 300 ? answer.json : undefined;
      } catch (error) {
        failed[op]++;
        lastError[op] = (error as Error).message;
        return undefined;
      }
    };
    const deadline = started + DURATION_MS;
    const worker = async (w: number) => {
      for (let n = 0; performance.now() < deadline; n++) {
        const vm = await attempt(
          'create',
          'POST',
          `${api}/v1/vms?wait=${WAIT_S}`,
          { name: `churn-${w}-${n}`, vcpu: 1, mem_mib: 128, kernel_path: image.kernel, rootfs_path: image.rootfs },
          'running',
        );
        const id: string | undefined = vm?.id;
        if (!id) continue;
        // An action answers once the VM reached the state it asked for (or the wait ran out: a 4xx/5xx).
        await attempt('stop', 'POST', `${api}/v1/vms/${id}/stop?wait=${WAIT_S}`);
        await attempt('start', 'POST', `${api}/v1/vms/${id}/start?wait=${WAIT_S}`);
        await attempt('stop', 'POST', `${api}/v1/vms/${id}/stop?wait=${WAIT_S}`);
        await attempt('delete', 'DELETE', `${api}/v1/vms/${id}?wait=${WAIT_S}`);
      }
    };
    const ticker = setInterval(() => void report('').catch((error: Error) => console.log(`  (no memory figures: ${error.message})`)), REPORT_EVERY_MS);
    try {
      await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    } finally {
      clearInterval(ticker);
    }
    await eventually('every churned VM is gone', async () => (await call('GET', `${api}/v1/vms?limit=1`)).json.items.length === 0, 120_000).catch(() =>
      console.log('  (some VMs were still there 2 min after the churn ended)'),
    );
    await report('end');
    for (const op of OPS) if (lastError[op]) console.log(`  last ${op} failure: ${lastError[op]}`);
    console.log(`  hollow VMM processes left: ${await agents.processes()}`);
  } finally {
    await agents.close().catch(() => undefined);
    await agents.stop();
    await manager.stop();
    dir.remove();
  }
}

if (process.env.BENCH_CHURN_POSTGRES === '1') {
  const postgres = await startPostgres();
  try {
    await soak('postgres', { DATABASE_URL: await postgres.createDatabase() }, postgres);
  } finally {
    await postgres.stop();
  }
} else {
  await soak('pglite', {}, undefined);
}
await dispatcher.close();
