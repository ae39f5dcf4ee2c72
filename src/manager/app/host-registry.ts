import type { Logger } from 'pino';
import type { HostCapacity } from '../../contracts/agent-api.js';
import type { EnrollRequest, HeartbeatRequest, Host, JoinToken } from '../../contracts/host-api.js';
import type { Clock } from '../../kit/clock.js';
import { NexusError } from '../../kit/nexus-error.js';
import { hashSecret, mintSecret, secretsEqual } from '../../kit/secret.js';
import type { HostRecord, HostRepo } from '../ports/host-repo.js';
import type { ImageRegistry } from './image-registry.js';

export interface HostRegistryConfig {
  /** How often agents are told to heartbeat. */
  heartbeatIntervalMs: number;
}

/** Use cases of the host registry: admitting agents with join tokens, heartbeats, listing. */
export class HostRegistry {
  constructor(
    private readonly hosts: HostRepo,
    private readonly images: Pick<ImageRegistry, 'syncHost'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: HostRegistryConfig,
  ) {}

  /** Mints a single-use join token; only its hash is kept, so the answer is the only copy. */
  async mintJoinToken(ttlSeconds: number): Promise<JoinToken> {
    const token = mintSecret('nxjt');
    const expiresAt = new Date(this.clock.now().getTime() + ttlSeconds * 1000);
    const { id } = await this.hosts.createJoinToken(hashSecret(token), expiresAt);
    this.log.info({ event: 'join_token_minted', join_token_id: id, expires_at: expiresAt.toISOString() }, 'join token minted');
    return { token, expires_at: expiresAt.toISOString() };
  }

  async enroll(request: EnrollRequest, remoteAddress: string): Promise<{ host: HostRecord; credential: string; heartbeatIntervalMs: number }> {
    const credential = mintSecret('nxhc');
    const outcome = await this.hosts.enroll(
      hashSecret(request.join_token),
      { name: request.name, address: request.address, capacity: request.capacity, credential },
      this.clock.now(),
    );
    if (!outcome.ok) {
      // Audit-worthy: someone holds a token that does not admit them (replay, expiry or guess).
      this.log.warn(
        { event: 'enrollment_rejected', reason: outcome.reason, join_token_id: outcome.tokenId, host_name: request.name, remote_address: remoteAddress },
        'enrollment rejected',
      );
      throw new NexusError('join_token_invalid', 'the join token is unknown, already used or expired', {
        suggestion: 'Mint a new one with `nexus hosts join-token` and start the agent with it.',
      });
    }
    this.log.info(
      { event: 'host_enrolled', host_id: outcome.host.id, host_name: outcome.host.name, reenrolled: outcome.reenrolled, remote_address: remoteAddress },
      'host enrolled',
    );
    return { host: outcome.host, credential, heartbeatIntervalMs: this.config.heartbeatIntervalMs };
  }

  /** Records a heartbeat (and the host's image store, when it sends it); answers when the next one is due. */
  async heartbeat(hostId: string, bearer: string | undefined, request: HeartbeatRequest): Promise<number> {
    await this.authenticateHost(hostId, bearer);
    await this.hosts.recordHeartbeat(hostId, request.address, request.capacity, this.clock.now());
    if (request.images) await this.images.syncHost(hostId, request.images);
    return this.config.heartbeatIntervalMs;
  }

  async list(): Promise<Host[]> {
    return (await this.hosts.list()).map(toHost);
  }

  async get(id: string): Promise<Host> {
    const host = await this.hosts.get(id);
    if (!host) throw new NexusError('not_found', `no host ${id}`, { suggestion: 'GET /v1/hosts lists the hosts.' });
    return toHost(host);
  }

  async countReady(): Promise<number> {
    return this.hosts.countReady();
  }

  /** The answer is the same for an unknown host and a wrong credential: no existence leak. */
  private async authenticateHost(hostId: string, bearer: string | undefined): Promise<HostRecord> {
    const host = await this.hosts.get(hostId);
    if (!host || bearer === undefined || !secretsEqual(bearer, host.credential)) {
      throw new NexusError('unauthorized', 'missing or invalid host credential', {
        suggestion: 'The agent keeps its credential in its state dir; re-enroll it with a new join token if that was lost.',
      });
    }
    return host;
  }
}

function toHost(record: HostRecord): Host {
  return {
    id: record.id,
    name: record.name,
    address: record.address,
    status: record.status,
    capacity: record.capacity as HostCapacity,
    last_seen_at: record.lastSeenAt.toISOString(),
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  };
}
