import type { Logger } from 'pino';
import type { HostCapacity } from '../../contracts/agent-api.js';
import type { HostImage } from '../../contracts/image-api.js';
import { NexusError, messageOf } from '../../kit/nexus-error.js';
import type { AgentIdentity, IdentityStore } from '../ports/identity-store.js';
import type { ConnectManager } from '../ports/manager-api.js';

export interface ManagerLinkConfig {
  managerUrl: string;
  name: string;
  /** host:port the manager reaches this agent at. */
  address: string;
}

/**
 * The agent's side of the host registry: enrolls once with a join token, then heartbeats its
 * capacity and image store. A heartbeat that fails is logged and retried at the next beat; the manager marks the
 * host unreachable meanwhile, and ready again when beats resume.
 */
export class ManagerLink {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private beating: Promise<void> | undefined;
  private lastBeatFailed = false;

  constructor(
    private readonly config: ManagerLinkConfig,
    private readonly connect: ConnectManager,
    private readonly capacity: () => Promise<HostCapacity>,
    private readonly images: () => Promise<HostImage[]>,
    private readonly log: Logger,
  ) {}

  /**
   * The identity to run with: the stored one when it belongs to this manager, else a new one from
   * enrolling with `joinToken`. A stored identity wins over a join token, so restarting an agent
   * with the same command line does not burn a token.
   */
  async establish(store: IdentityStore, stored: AgentIdentity | undefined, joinToken: string | undefined): Promise<AgentIdentity> {
    if (stored?.enrollment?.managerUrl === this.config.managerUrl) {
      if (joinToken) this.log.info({ host_id: stored.enrollment.hostId }, 'already enrolled with this manager: the join token is not used');
      return stored;
    }
    if (!joinToken) {
      throw new NexusError('unauthorized', `this agent is not enrolled with ${this.config.managerUrl}`, {
        suggestion: 'Mint a join token there (`nexus hosts join-token`) and start the agent with --join-token or NEXUS_JOIN_TOKEN.',
      });
    }
    const manager = this.connect({});
    try {
      const enrolled = await manager.enroll({
        join_token: joinToken,
        name: this.config.name,
        address: this.config.address,
        capacity: await this.capacity(),
      });
      const identity: AgentIdentity = {
        credential: enrolled.credential,
        enrollment: { hostId: enrolled.host_id, managerUrl: this.config.managerUrl },
      };
      await store.save(identity);
      this.log.info({ host_id: enrolled.host_id, manager: this.config.managerUrl, identity_file: store.path }, 'enrolled with the manager');
      return identity;
    } catch (error) {
      throw new NexusError(error instanceof NexusError ? error.code : 'unavailable', `enrolling with ${this.config.managerUrl}: ${messageOf(error)}`, {
        cause: error,
        suggestion: error instanceof NexusError ? error.suggestion : undefined,
      });
    } finally {
      await manager.close();
    }
  }

  /**
   * Heartbeats until stopped: the first beat at once, the next when the manager's answer says
   * (`retryMs` while it does not answer).
   */
  startHeartbeats(identity: () => AgentIdentity, retryMs = 5000): void {
    const enrolled = identity().enrollment;
    if (!enrolled) return;
    let intervalMs = retryMs;
    // The credential is read on every beat: a rotation's new one is used from the next beat on.
    const manager = this.connect({ bearer: () => identity().credential, timeoutMs: retryMs });
    const beat = async (): Promise<void> => {
      try {
        const answer = await manager.heartbeat(enrolled.hostId, {
          address: this.config.address,
          capacity: await this.capacity(),
          images: await this.images(),
        });
        intervalMs = answer.heartbeat_interval_ms;
        if (this.lastBeatFailed) this.log.info('heartbeats reach the manager again');
        this.lastBeatFailed = false;
      } catch (error) {
        // Log the first failure of a run loudly, the rest quietly: a down manager must not flood logs.
        const level = this.lastBeatFailed ? 'debug' : 'warn';
        const hint = error instanceof NexusError && error.code === 'unauthorized' ? ' (the manager no longer knows this credential: re-enroll)' : '';
        this.log[level]({ err: messageOf(error) }, `heartbeat failed${hint}`);
        this.lastBeatFailed = true;
        intervalMs = retryMs;
      }
    };
    const loop = (): void => {
      if (this.stopped) return;
      this.beating = beat().finally(() => {
        this.beating = undefined;
        if (!this.stopped) this.timer = setTimeout(loop, intervalMs);
      });
    };
    this.onStop = () => manager.close();
    loop();
  }

  private onStop: () => Promise<void> = async () => undefined;

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.beating;
    await this.onStop();
  }
}
