import type { Logger } from 'pino';
import type { Clock } from '../../kit/clock.js';
import { messageOf } from '../../kit/nexus-error.js';
import type { AuditRepo } from '../ports/access-repos.js';
import type { HostRepo } from '../ports/host-repo.js';
import type { Leadership } from '../ports/leadership.js';
import { PeriodicTask } from '../../kit/periodic-task.js';

export interface HostLivenessConfig {
  /** A host not heard from for this long is `unreachable`. Default 15 s. */
  heartbeatTimeoutMs: number;
}

/**
 * Marks hosts whose heartbeat is late as `unreachable`, and audits each change (actor `system`).
 * A heartbeat makes them `ready` again. Runs a sweep every third of the timeout, so a host is
 * flagged at most 4/3 of it late.
 */
export class HostLiveness {
  private readonly loop: PeriodicTask;

  constructor(
    private readonly hosts: HostRepo,
    private readonly audit: Pick<AuditRepo, 'record'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: HostLivenessConfig,
    private readonly leadership: Leadership,
  ) {
    this.loop = new PeriodicTask(Math.max(100, Math.floor(config.heartbeatTimeoutMs / 3)), () => this.sweep());
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async sweep(): Promise<void> {
    if (!this.leadership.isLeader()) return;
    const now = this.clock.now();
    try {
      const late = await this.hosts.markLateHostsUnreachable(new Date(now.getTime() - this.config.heartbeatTimeoutMs), now);
      for (const host of late) {
        this.log.warn({ event: 'host_unreachable', host_id: host.id, host_name: host.name }, 'host missed its heartbeats');
        await this.audit
          .record({
            actor: 'system',
            action: 'host.unreachable',
            resource: 'host',
            resourceId: host.id,
            requestId: 'none',
            remoteAddress: null,
            before: { name: host.name, status: 'ready' },
            after: { name: host.name, status: 'unreachable' },
            result: 'success',
            status: null,
            detail: `no heartbeat since ${host.lastSeenAt.toISOString()} (timeout ${this.config.heartbeatTimeoutMs} ms)`,
          })
          .catch((error: unknown) => this.log.error({ err: messageOf(error), host_id: host.id }, 'could not audit the host status change'));
      }
    } catch (error) {
      this.log.error({ err: error }, `host liveness sweep failed: ${messageOf(error)}`);
    }
  }
}
