import type { Logger } from 'pino';
import type { HostCapacity } from '../../contracts/agent-api.js';
import type { EnrollRequest, HeartbeatRequest, Host, JoinToken } from '../../contracts/host-api.js';
import type { Clock } from '../../kit/clock.js';
import { NexusError } from '../../kit/nexus-error.js';
import { hashSecret, mintSecret, secretsEqual } from '../../kit/secret.js';
import { type AgentGateway, agentTargetOf } from '../ports/agent-gateway.js';
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
    private readonly agents: Pick<AgentGateway, 'replaceCredential'>,
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
    const host = await this.authenticateHost(hostId, bearer);
    // The agent already beats with the credential a rotation handed it: the manager that rotated
    // died before recording the switch, so this beat completes it.
    if (host.nextCredential !== null && bearer !== undefined && secretsEqual(bearer, host.nextCredential)) {
      await this.completeRotation(host, host.nextCredential, 'heartbeat');
    }
    await this.hosts.recordHeartbeat(hostId, request.address, request.capacity, this.clock.now());
    if (request.images) await this.images.syncHost(hostId, request.images);
    return this.config.heartbeatIntervalMs;
  }

  /**
   * Replaces the host's credential in place: records the next one, hands it to the agent (which
   * accepts the old one a little longer, for calls already under way), then makes it the
   * credential. An agent that cannot be reached leaves the rotation pending: nothing changes for
   * the host, and a retry hands over the same credential.
   */
  async rotateCredential(hostId: string): Promise<Host> {
    const host = await this.hosts.get(hostId);
    const next = host && (await this.hosts.beginCredentialRotation(hostId, mintSecret('nxhc')));
    if (!host || !next) throw new NexusError('not_found', `no host ${hostId}`, { suggestion: 'GET /v1/hosts lists the hosts.' });
    const target = agentTargetOf(host);
    try {
      await this.agents.replaceCredential(target, next);
    } catch (error) {
      // An agent that took the new credential but whose answer was lost knows only that one now.
      const switched = error instanceof NexusError && error.code === 'unauthorized';
      if (!switched) throw rotationFailed(host, error);
      await this.agents.replaceCredential({ ...target, credential: next }, next).catch((again: unknown) => {
        throw rotationFailed(host, again);
      });
    }
    await this.completeRotation(host, next, 'api');
    return this.get(hostId);
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

  private async completeRotation(host: HostRecord, next: string, by: 'api' | 'heartbeat'): Promise<void> {
    if (await this.hosts.completeCredentialRotation(host.id, next, this.clock.now())) {
      this.log.info({ event: 'host_credential_rotated', host_id: host.id, host_name: host.name, completed_by: by }, 'host credential rotated');
    }
  }

  /**
   * The answer is the same for an unknown host and a wrong credential: no existence leak. The
   * credential of a rotation under way is accepted too: the agent may already hold only that one.
   */
  private async authenticateHost(hostId: string, bearer: string | undefined): Promise<HostRecord> {
    const host = await this.hosts.get(hostId);
    const known = (credential: string | null) => credential !== null && bearer !== undefined && secretsEqual(bearer, credential);
    if (!host || !(known(host.credential) || known(host.nextCredential))) {
      throw new NexusError('unauthorized', 'missing or invalid host credential', {
        suggestion: 'The agent keeps its credential in its state dir; re-enroll it with a new join token if that was lost.',
      });
    }
    return host;
  }
}

function rotationFailed(host: HostRecord, error: unknown): NexusError {
  const reason = error instanceof Error ? error.message : String(error);
  return new NexusError('unavailable', `could not hand host ${host.name} its new credential: ${reason}`, {
    cause: error,
    terminal: false,
    suggestion: 'Nothing changed for the host: its current credential still works. Retry once its agent is reachable.',
  });
}

function toHost(record: HostRecord): Host {
  return {
    id: record.id,
    name: record.name,
    address: record.address,
    status: record.status,
    capacity: record.capacity as HostCapacity,
    credential_rotated_at: record.credentialRotatedAt?.toISOString() ?? null,
    last_seen_at: record.lastSeenAt.toISOString(),
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  };
}
