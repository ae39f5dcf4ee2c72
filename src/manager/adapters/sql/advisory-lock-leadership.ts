import pg from 'pg';
import type { Logger } from 'pino';
import { messageOf } from '../../../kit/nexus-error.js';
import { PeriodicTask } from '../../../kit/periodic-task.js';
import type { Leadership } from '../../ports/leadership.js';

/** An arbitrary, fixed 64-bit key: "nexus" in ASCII. Every manager of one database uses it. */
const LOCK_KEY = '478560413032';

/**
 * Leadership through a Postgres session advisory lock held on a connection of its own: the lock
 * lives exactly as long as that session, so a leader that dies (or loses its connection) frees it,
 * and a follower takes it at its next try, within one `intervalMs`.
 */
export class AdvisoryLockLeadership implements Leadership {
  private client: pg.Client | undefined;
  private leader = false;
  private readonly loop: PeriodicTask;

  constructor(
    private readonly url: string,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {
    this.loop = new PeriodicTask(intervalMs, () => this.tick());
  }

  isLeader(): boolean {
    return this.leader;
  }

  start(): void {
    this.loop.start(true);
  }

  async stop(): Promise<void> {
    await this.loop.stop();
    this.setLeader(false);
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }

  private async tick(): Promise<void> {
    try {
      const client = await this.connection();
      if (this.leader) {
        await client.query('SELECT 1'); // still our session, so still our lock
        return;
      }
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [LOCK_KEY]);
      this.setLeader(rows[0]?.locked === true);
    } catch (error) {
      this.log.warn({ err: messageOf(error) }, 'leadership check failed; not leading until the database answers');
      this.setLeader(false);
      await this.client?.end().catch(() => undefined);
      this.client = undefined;
    }
  }

  private async connection(): Promise<pg.Client> {
    if (!this.client) {
      // A check or connect that gets no answer within a period (5 s at least, so that a busy
      // machine does not make leadership flap) fails: over a silent network a leader must not go
      // on believing it leads, nor the loop wait the many minutes TCP takes to give up.
      const timeoutMs = Math.max(this.intervalMs, 5000);
      const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
      client.on('error', (error) => {
        this.log.warn({ err: messageOf(error) }, 'the leadership connection failed');
        this.setLeader(false);
        if (this.client === client) this.client = undefined;
      });
      await client.connect();
      this.client = client;
    }
    return this.client;
  }

  private setLeader(leader: boolean): void {
    if (leader !== this.leader) this.log.info({ leader }, leader ? 'this manager leads: it runs the reconciler' : 'this manager no longer leads');
    this.leader = leader;
  }
}

/** The embedded database has one process by construction (its dir lock): that process leads. */
export const soleLeadership: Leadership = { isLeader: () => true, start: () => undefined, stop: async () => undefined };
