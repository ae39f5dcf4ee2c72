import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { type NexusProcess, eventually, spawnNexus } from './nexus-process.js';
import { freePort } from './ports.js';
import { startWriters } from './vm-writers.js';

export interface CrashLoopOptions {
  /** The embedded database's data dir, kept across every life of the manager. */
  dataDir: string;
  /** How many times the manager is killed with SIGKILL. */
  kills: number;
  /** Concurrent writers while it runs. Default 4. */
  writers?: number;
  /** Told one line per life. */
  onRound?: (round: RoundReport) => void;
}

export interface RoundReport {
  round: number;
  /** `writing`: killed that long after its first acknowledged write; `starting`: that long after it was spawned. */
  killedWhile: 'writing' | 'starting';
  killAfterMs: number;
  /** From spawn to a /healthz answer (this life's start, after the previous one's kill). */
  openedInMs: number | undefined;
  /** Writes acknowledged (201) in this life. */
  acknowledged: number;
  /** Acknowledged writes of earlier lives that this life did not find (must stay empty). */
  lost: string[];
  /** Whether the dead process's dir lock was still there when this life was spawned. */
  staleLock: boolean;
}

export interface CrashLoopReport {
  rounds: RoundReport[];
  /** Every write acknowledged across all lives. */
  acknowledged: number;
  /** Acknowledged writes missing when the manager was opened once more after the last kill. */
  lostAtEnd: string[];
}

/**
 * Kills the manager with SIGKILL `kills` times on one embedded data dir while writers create VMs,
 * each kill at another moment (while it starts, opens the database or serves writes), restarting it
 * every time. Every VM whose create was answered 201 is remembered, and each new life lists the VMs
 * and reports the acknowledged ones it does not find. Asserts nothing: the test and the bench decide.
 */
export async function crashManagerRepeatedly(options: CrashLoopOptions): Promise<CrashLoopReport> {
  const dispatcher = new Agent({ connections: 16 });
  try {
    return await crashLoop(options, dispatcher);
  } finally {
    await dispatcher.close();
  }
}

async function crashLoop(options: CrashLoopOptions, dispatcher: Agent): Promise<CrashLoopReport> {
  const acknowledged = new Map<string, string>();
  const rounds: RoundReport[] = [];
  let lastOpenedMs = 3000;
  for (let round = 0; round < options.kills; round++) {
    // Every fourth life is killed while it starts: at a half, 70 % or 90 % of the time the last
    // start took to answer, so while it opens the database (recovering from the previous kill),
    // migrates or sets up its server. The others are killed while writes flow, 0 to 1.5 s after
    // the first one is acknowledged. No randomness, so a failure can be replayed.
    const killedWhile = round % 4 === 3 ? 'starting' : 'writing';
    const killAfterMs = killedWhile === 'starting' ? Math.round(lastOpenedMs * ([0.5, 0.7, 0.9][Math.floor(round / 4) % 3] ?? 0.5)) : (round * 389) % 1500;
    const staleLock = existsSync(join(options.dataDir, 'nexus.lock'));
    const life = await startLife(options.dataDir);
    try {
      let report: RoundReport;
      if (killedWhile === 'starting') {
        await new Promise((resolve) => setTimeout(resolve, killAfterMs));
        life.process.child.kill('SIGKILL');
        await life.process.exited;
        report = { round, killedWhile, killAfterMs, openedInMs: undefined, acknowledged: 0, lost: [], staleLock };
      } else {
        const openedInMs = await life.opened();
        lastOpenedMs = openedInMs;
        const lost = await missing(dispatcher, life.url, life.token(), acknowledged);
        const writers = startWriters(dispatcher, life.url, life.token(), `r${round}`, options.writers ?? 4, acknowledged);
        try {
          await eventually(`round ${round}: a write is acknowledged`, () => writers.count() > 0, 60_000);
          await new Promise((resolve) => setTimeout(resolve, killAfterMs));
          life.process.child.kill('SIGKILL');
          await life.process.exited;
        } finally {
          // Stopped whatever happened above: writers left running would outlive the test.
          await writers.stop();
        }
        report = { round, killedWhile, killAfterMs, openedInMs, acknowledged: writers.count(), lost, staleLock };
      }
      rounds.push(report);
      options.onRound?.(report);
    } finally {
      await life.process.stop();
    }
  }
  // Once more, to check what the last kill left, and to stop cleanly.
  const last = await startLife(options.dataDir);
  try {
    await last.opened();
    return { rounds, acknowledged: acknowledged.size, lostAtEnd: await missing(dispatcher, last.url, last.token(), acknowledged) };
  } finally {
    await last.process.stop();
  }
}

interface Life {
  process: NexusProcess;
  url: string;
  /** Resolves with the time from spawn to the first /healthz answer; fails with the output if it never answers. */
  opened(): Promise<number>;
  token(): string;
}

async function startLife(dataDir: string): Promise<Life> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const started = performance.now();
  const unlimited = { NEXUS_RATE_LIMIT_READS: '100000000', NEXUS_RATE_LIMIT_WRITES: '100000000', NEXUS_RATE_LIMIT_ADDRESS: '100000000' };
  // A short resync: the reconciler writes (each VM fails for want of a host) while the API does.
  const child = spawnNexus(['manager', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    NEXUS_LOG_LEVEL: 'warn',
    NEXUS_RESYNC_MS: '500',
    ...unlimited,
  });
  return {
    process: child,
    url,
    opened: async () => {
      try {
        await eventually('the manager answers', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 120_000);
      } catch (error) {
        throw new Error(`the manager did not open its data dir again: ${(error as Error).message}\n${child.output()}`, { cause: error });
      }
      return performance.now() - started;
    },
    token: () => readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(),
  };
}

/** The acknowledged VMs (by name) the manager at `url` does not list, or lists under another id. */
async function missing(dispatcher: Agent, url: string, token: string, acknowledged: Map<string, string>): Promise<string[]> {
  const found = new Map<string, string>();
  let cursor: string | null = null;
  do {
    const response = await request(`${url}/v1/vms?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, {
      dispatcher,
      headers: { authorization: `Bearer ${token}` },
    });
    const page = (await response.body.json()) as { items?: { id: string; name: string }[]; next_cursor?: string | null };
    if (response.statusCode !== 200 || !page.items) throw new Error(`listing VMs answered ${response.statusCode}: ${JSON.stringify(page)}`);
    for (const vm of page.items) found.set(vm.name, vm.id);
    cursor = page.next_cursor ?? null;
  } while (cursor);
  return [...acknowledged].filter(([name, id]) => found.get(name) !== id).map(([name]) => name);
}
