import type { Logger } from 'pino';
import type { Clock } from '../../kit/clock.js';
import { messageOf } from '../../kit/nexus-error.js';
import { PeriodicTask } from '../../kit/periodic-task.js';
import type { AuditRepo } from '../ports/access-repos.js';

export interface RefusalAuditConfig {
  /** Refusals from one source after its first in a window are counted and written as one row when the window ends. Default 60 s. */
  windowMs: number;
  /** Sources itemized per window; refusals from any more are counted together in one row. Default 100. */
  maxSources: number;
}

/** One refused call, as its audit row tells it. */
export interface Refusal {
  /** Who called, as far as known: `host:<id>` (a heartbeat with a wrong credential), `join_token:<id>`, `token:<id> (<owner>)`, else `anonymous`. */
  actor: string;
  action: string;
  resource: string;
  resourceId: string | null;
  remoteAddress: string;
  requestId: string;
  status: number;
  /** The row's result: `denied` (the default) for 401 and 403, `failure` for other refusals (409, 400). */
  result?: 'denied' | 'failure';
  /** Why it was refused, e.g. "wrong host credential". */
  reason: string;
}

interface Source {
  first: Refusal;
  last: Refusal;
  since: Date;
  more: number;
}

/** Distinct sources remembered in the overflow count, at most (past it the count says "at least"). */
const MAX_OVERFLOW_SOURCES = 10_000;

/**
 * Audits refused calls (heartbeats with a wrong or unknown credential, enrollments a join token
 * does not admit, calls without a valid token, a token past its rate limit) without letting a
 * flood of them flood the audit table: the first refusal of a source (actor, address and action) in a window gets
 * its own row at once; the rest of that window are counted and written as one row when it ends.
 * Past `maxSources` sources in a window, refusals from the others are counted together into one
 * row. So a window writes at most 2 x maxSources + 1 rows, however many calls are refused.
 * Counts live in each manager's memory; one stopping writes what it has counted.
 */
export class RefusalAudit {
  private sources = new Map<string, Source>();
  private overflow = { refusals: 0, sources: new Set<string>(), since: undefined as Date | undefined, last: undefined as Refusal | undefined };
  private readonly loop: PeriodicTask;
  private readonly writes = new Set<Promise<void>>();

  constructor(
    private readonly audit: Pick<AuditRepo, 'record'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: RefusalAuditConfig,
  ) {
    this.loop = new PeriodicTask(config.windowMs, () => this.flush());
  }

  start(): void {
    this.loop.start();
  }

  /** Stops the window clock and writes what was counted. */
  async stop(): Promise<void> {
    await this.loop.stop();
    await this.flush();
  }

  /** Notes a refusal; never throws and never waits for the database (the caller is answering a 401). */
  note(refusal: Refusal): void {
    const key = `${refusal.actor}\n${refusal.remoteAddress}\n${refusal.action}`;
    const source = this.sources.get(key);
    if (source) {
      source.more++;
      source.last = refusal;
      return;
    }
    if (this.sources.size >= this.config.maxSources) {
      this.overflow.refusals++;
      this.overflow.since ??= this.clock.now();
      this.overflow.last = refusal;
      if (this.overflow.sources.size < MAX_OVERFLOW_SOURCES) this.overflow.sources.add(key);
      return;
    }
    this.sources.set(key, { first: refusal, last: refusal, since: this.clock.now(), more: 0 });
    this.write(refusal, `${refusal.reason}; more from ${sourceName(refusal)} within ${Math.round(this.config.windowMs / 1000)} s are counted in one row`);
  }

  /** Ends the window: writes the counts of refusals not itemized, and forgets the sources. */
  async flush(): Promise<void> {
    const now = this.clock.now();
    const sources = this.sources;
    const overflow = this.overflow;
    this.sources = new Map();
    this.overflow = { refusals: 0, sources: new Set(), since: undefined, last: undefined };
    for (const source of sources.values()) {
      if (source.more === 0) continue;
      this.write(
        { ...source.last, resourceId: source.last.resourceId ?? source.first.resourceId },
        `${source.more} more refused (${source.last.reason}) from ${sourceName(source.first)} between ${source.since.toISOString()} and ${now.toISOString()}`,
      );
    }
    if (overflow.refusals > 0 && overflow.last) {
      const many = overflow.sources.size >= MAX_OVERFLOW_SOURCES ? `at least ${MAX_OVERFLOW_SOURCES}` : String(overflow.sources.size);
      this.write(
        { ...overflow.last, actor: 'anonymous', resourceId: null },
        `${overflow.refusals} refused from ${many} more sources between ${overflow.since?.toISOString()} and ${now.toISOString()}, not itemized: more than ${this.config.maxSources} sources in one window`,
        null,
      );
    }
    await Promise.all([...this.writes]);
  }

  private write(refusal: Refusal, detail: string, remoteAddress: string | null = refusal.remoteAddress): void {
    const written = this.audit
      .record({
        actor: refusal.actor,
        action: refusal.action,
        resource: refusal.resource,
        resourceId: refusal.resourceId,
        requestId: refusal.requestId,
        remoteAddress,
        result: refusal.result ?? 'denied',
        status: refusal.status,
        before: null,
        after: null,
        detail,
      })
      .catch((error: unknown) => this.log.error({ err: messageOf(error), action: refusal.action }, 'could not write the audit row of a refused call'))
      .finally(() => this.writes.delete(written));
    this.writes.add(written);
  }
}

function sourceName(refusal: Refusal): string {
  return `${refusal.actor} at ${refusal.remoteAddress}`;
}
