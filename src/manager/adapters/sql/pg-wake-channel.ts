import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { UUID_PATTERN } from '../../../contracts/schema.js';
import { messageOf } from '../../../kit/nexus-error.js';
import { PeriodicTask } from '../../../kit/periodic-task.js';
import type { WakeChannel } from '../../ports/wake-channel.js';
import type { Schema } from './schema.js';

const CHANNEL = 'nexus_vm_wake';

/**
 * A WakeChannel over Postgres LISTEN/NOTIFY: notifications go out through the pool, and arrive on
 * a connection of its own that is re-opened (every `retryMs`) when it drops. A wake lost while it
 * is down is not lost work: the leader's periodic resync still covers every VM.
 */
export class PgWakeChannel implements WakeChannel {
  private client: pg.Client | undefined;
  private onWake: (vmId: string, userAction: boolean) => void = () => undefined;
  private readonly keeper: PeriodicTask;

  constructor(
    private readonly url: string,
    private readonly db: Kysely<Schema>,
    private readonly log: Logger,
    retryMs: number,
  ) {
    this.keeper = new PeriodicTask(retryMs, () => this.listen());
  }

  publish(vmId: string, userAction: boolean): void {
    sql`SELECT pg_notify(${CHANNEL}, ${`${userAction ? 'user' : 'sync'}:${vmId}`})`
      .execute(this.db)
      .catch((error: unknown) => this.log.warn({ err: messageOf(error), vm_id: vmId }, 'could not tell the other managers; the leader resync will'));
  }

  async start(onWake: (vmId: string, userAction: boolean) => void): Promise<void> {
    this.onWake = onWake;
    await this.listen();
    this.keeper.start();
  }

  async stop(): Promise<void> {
    await this.keeper.stop();
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async listen(): Promise<void> {
    if (this.client) return;
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', (error) => {
      this.log.warn({ err: messageOf(error) }, 'the wake channel connection failed; re-opening it');
      if (this.client === client) this.client = undefined;
      client.end().catch(() => undefined);
    });
    client.on('notification', (message) => {
      const [kind, vmId] = (message.payload ?? '').split(':');
      if (vmId && UUID_PATTERN.test(vmId)) this.onWake(vmId, kind === 'user');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      this.client = client;
    } catch (error) {
      this.log.warn({ err: messageOf(error) }, 'could not listen for wakes; retrying');
      await client.end().catch(() => undefined);
    }
  }
}
