import type { Logger } from 'pino';
import type { HostCapacity } from '../../contracts/agent-api.js';
import type { EnrollRequest, HeartbeatRequest, Host, JoinToken } from '../../contracts/host-api.js';
import type { Clock } from '../../kit/clock.js';
import { NexusError, messageOf } from '../../kit/nexus-error.js';
import { currentRequestId } from '../../kit/request-context.js';
import { hashSecret, matchesSecretHash, mintSecret } from '../../kit/secret.js';
import type { AuditRepo } from '../ports/access-repos.js';
import { type AgentGateway, agentTargetOf } from '../ports/agent-gateway.js';
import type { HostRecord, HostRepo } from '../ports/host-repo.js';
import type { ImageRegistry } from './image-registry.js';
import type { RefusalAudit } from './refusal-audit.js';

export interface HostRegistryConfig {
  /** How often agents are told to heartbeat. */
  heartbeatIntervalMs: number;
}

/**
 * How an enrollment went, for its audit row: the join token that asked (when it was valid), and
 * the host it made, took over or was refused.
 */
export type EnrollResult =
  | { ok: true; kind: 'enrolled' | 'reenrolled' | 'replaced'; host: HostRecord; credential: string; heartbeatIntervalMs: number; joinTokenId: string }
  | { ok: false; error: NexusError; joinTokenId?: string; hostId?: string };

/** Use cases of the host registry: admitting agents with join tokens, heartbeats, listing. */
export class HostRegistry {
  constructor(
    private readonly hosts: HostRepo,
    private readonly images: Pick<ImageRegistry, 'syncHost'>,
    private readonly agents: Pick<AgentGateway, 'replaceCredential'>,
    private readonly audit: Pick<AuditRepo, 'record'>,
    private readonly refusals: Pick<RefusalAudit, 'note'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: HostRegistryConfig,
  ) {}

  /**
   * Mints a single-use join token; only its hash is kept, so the answer is the only copy. With
   * `replaceHost`, the token may enroll under the name of that host even while it is ready
   * (locking its agent out), and under no other name.
   */
  async mintJoinToken(ttlSeconds: number, replaceHost?: string): Promise<JoinToken> {
    if (replaceHost !== undefined && !(await this.hosts.existsNamed(replaceHost))) {
      throw new NexusError('not_found', `no host named ${replaceHost} to replace`, {
        suggestion: 'GET /v1/hosts lists the hosts; a new host needs no replace_host.',
      });
    }
    const token = mintSecret('nxjt');
    const expiresAt = new Date(this.clock.now().getTime() + ttlSeconds * 1000);
    const { id } = await this.hosts.createJoinToken(hashSecret(token), expiresAt, replaceHost ?? null);
    this.log.info(
      { event: 'join_token_minted', join_token_id: id, expires_at: expiresAt.toISOString(), replace_host: replaceHost ?? null },
      'join token minted',
    );
    return { id, token, expires_at: expiresAt.toISOString(), replace_host: replaceHost ?? null };
  }

  /**
   * Admits an agent with a join token. A name already taken is taken over only from a host that
   * is unreachable (an agent that lost its state dir comes back so) or by a token minted to
   * replace it: otherwise a join token could move a working host to another address and lock its
   * agent out. Refusals are answers (with what the audit row needs), not thrown.
   */
  async enroll(request: EnrollRequest, remoteAddress: string): Promise<EnrollResult> {
    const credential = mintSecret('nxhc');
    const outcome = await this.hosts.enroll(
      hashSecret(request.join_token),
      { name: request.name, address: request.address, capacity: request.capacity, credential },
      this.clock.now(),
    );
    if (!outcome.ok) {
      const existing = outcome.reason === 'host_ready' ? outcome.host : undefined;
      // Audit-worthy: someone holds a token that does not admit them (replay, expiry, guess, takeover).
      this.log.warn(
        {
          event: 'enrollment_rejected',
          reason: outcome.reason,
          join_token_id: outcome.tokenId,
          host_name: request.name,
          host_id: existing?.id,
          remote_address: remoteAddress,
        },
        'enrollment rejected',
      );
      return { ok: false, error: enrollmentRefused(outcome, request.name), joinTokenId: outcome.tokenId, hostId: existing?.id };
    }
    this.log.info(
      {
        event: 'host_enrolled',
        host_id: outcome.host.id,
        host_name: outcome.host.name,
        kind: outcome.kind,
        join_token_id: outcome.tokenId,
        remote_address: remoteAddress,
      },
      outcome.kind === 'replaced' ? 'host replaced: its previous agent is locked out' : 'host enrolled',
    );
    return { ok: true, kind: outcome.kind, host: outcome.host, credential, heartbeatIntervalMs: this.config.heartbeatIntervalMs, joinTokenId: outcome.tokenId };
  }

  /**
   * Records a heartbeat (and the host's image store, when it sends it); answers when the next one
   * is due. A refused beat is audited (collapsed per source, see RefusalAudit); so is the beat
   * that brings an unreachable host back.
   */
  async heartbeat(hostId: string, bearer: string | undefined, request: HeartbeatRequest, remoteAddress: string): Promise<number> {
    const host = await this.authenticateHost(hostId, bearer, remoteAddress);
    // The agent already beats with the credential a rotation handed it: the manager that rotated
    // died before recording the switch, so this beat completes it.
    if (host.nextCredentialHash !== null && bearer !== undefined && matchesSecretHash(bearer, host.nextCredentialHash)) {
      await this.completeRotation(host, host.nextCredentialHash, 'heartbeat');
    }
    const was = await this.hosts.recordHeartbeat(hostId, request.address, request.capacity, this.clock.now());
    if (was === 'unreachable') {
      this.log.info({ event: 'host_ready', host_id: host.id, host_name: host.name, remote_address: remoteAddress }, 'host is back');
      await this.auditComeback(host, remoteAddress, `the first heartbeat since ${host.lastSeenAt.toISOString()} (agent at ${request.address})`);
    }
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
      await this.agents.replaceCredential(target, next.sealed);
    } catch (error) {
      // An agent that took the new credential but whose answer was lost knows only that one now.
      const switched = error instanceof NexusError && error.code === 'unauthorized';
      if (!switched) throw rotationFailed(host, error);
      await this.agents.replaceCredential({ ...target, credentialSealed: next.sealed }, next.sealed).catch((again: unknown) => {
        throw rotationFailed(host, again);
      });
    }
    await this.completeRotation(host, next.hash, 'api');
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

  private async completeRotation(host: HostRecord, nextHash: string, by: 'api' | 'heartbeat'): Promise<void> {
    if (await this.hosts.completeCredentialRotation(host.id, nextHash, this.clock.now())) {
      this.log.info({ event: 'host_credential_rotated', host_id: host.id, host_name: host.name, completed_by: by }, 'host credential rotated');
    }
  }

  /** Audits the beat that brings an unreachable host back (HostLiveness audits the way down). */
  private async auditComeback(host: HostRecord, remoteAddress: string, detail: string): Promise<void> {
    await this.audit
      .record({
        actor: `host:${host.id}`,
        action: 'host.ready',
        resource: 'host',
        resourceId: host.id,
        requestId: currentRequestId() ?? 'none',
        remoteAddress,
        before: { name: host.name, status: 'unreachable' },
        after: { name: host.name, status: 'ready' },
        result: 'success',
        status: null,
        detail,
      })
      .catch((error: unknown) => this.log.error({ err: messageOf(error), host_id: host.id }, 'could not audit the host status change'));
  }

  /**
   * The answer is the same for an unknown host and a wrong credential: no existence leak (the
   * audit row tells them apart). The credential of a rotation under way is accepted too: the
   * agent may already hold only that one.
   */
  private async authenticateHost(hostId: string, bearer: string | undefined, remoteAddress: string): Promise<HostRecord> {
    const host = await this.hosts.get(hostId);
    const known = (hash: string | null) => hash !== null && bearer !== undefined && matchesSecretHash(bearer, hash);
    if (!host || !(known(host.credentialHash) || known(host.nextCredentialHash))) {
      this.refusals.note({
        actor: host ? `host:${host.id}` : 'anonymous',
        action: 'host.heartbeat',
        resource: 'host',
        resourceId: hostId,
        remoteAddress,
        requestId: currentRequestId() ?? 'none',
        status: 401,
        reason: !host ? 'heartbeat for an unknown host' : bearer === undefined ? 'heartbeat without a credential' : 'heartbeat with a wrong credential',
      });
      throw new NexusError('unauthorized', 'missing or invalid host credential', {
        suggestion: 'The agent keeps its credential in its state dir; re-enroll it with a new join token if that was lost.',
      });
    }
    return host;
  }
}

function enrollmentRefused(outcome: { reason: string; host?: HostRecord; replaceHost?: string }, name: string): NexusError {
  if (outcome.reason === 'host_ready') {
    return new NexusError(
      'conflict',
      `host ${name} is enrolled and ready (last heartbeat ${outcome.host?.lastSeenAt.toISOString()}): enrolling under its name would lock its agent out`,
      {
        suggestion:
          'If this machine is that host and lost its state dir, start the agent again once the host shows unreachable (it stops heartbeating). ' +
          `To replace a working host, an admin mints a join token for it: \`nexus hosts join-token --replace ${name}\`. Otherwise choose another --name.`,
      },
    );
  }
  if (outcome.reason === 'wrong_host') {
    return new NexusError('join_token_invalid', `this join token was minted to replace host ${outcome.replaceHost}, not to enroll ${name}`, {
      suggestion: `Start the agent with --name ${outcome.replaceHost}, or mint a join token without --replace.`,
    });
  }
  return new NexusError('join_token_invalid', 'the join token is unknown, already used or expired', {
    suggestion: 'Mint a new one with `nexus hosts join-token` and start the agent with it.',
  });
}

function rotationFailed(host: HostRecord, error: unknown): NexusError {
  // Not a matter of reaching the agent: retrying would not help, and the error says what would.
  if (error instanceof NexusError && error.code === 'host_credential_unreadable') return error;
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
