import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { CreateProjectRequest, CreateTokenRequest, Project, ProjectQuotas, Token, TokenWithSecret } from '../../contracts/access-api.js';
import type { Clock } from '../../kit/clock.js';
import { NexusError } from '../../kit/nexus-error.js';
import { slowHash, verifySlowHash } from '../../kit/slow-hash.js';
import { parseTimestamp } from '../../kit/timestamp.js';
import { WindowCounter } from '../../kit/window-counter.js';
import { type Principal, brokenQuota } from '../domain/access-policy.js';
import type { ProjectRecord, ProjectRepo, TokenRecord, TokenRepo } from '../ports/access-repos.js';
import type { QuotaCheck } from '../ports/vm-repo.js';

/** Bearers whose proof is kept (a SHA-256 and a stored hash each, about 200 bytes). */
const MAX_PROVEN = 10_000;

export interface AccessServiceConfig {
  /**
   * How long a verified token is trusted without looking at the database again. Revocation takes
   * effect on every manager within this, so it stays well under a second.
   */
  cacheMs: number;
  /**
   * Wrong secrets one token id may be tried with per minute; past them its callers get 429 with no
   * slow hash run. The right secret is checked once and then remembered, so only guessing meets this.
   */
  wrongSecretsPerTokenPerMinute: number;
}

/**
 * Why a token was refused. The 401 says the same words for every reason (a guesser learns
 * nothing); the reason is for whoever ends a stream, which says it in its last event.
 */
export type RefusalReason = 'token_missing' | 'token_malformed' | 'token_unknown' | 'token_revoked' | 'token_expired' | 'token_rotated' | 'token_invalid';

/** 401 `unauthorized`, with the reason kept for the server's own use. */
export class TokenRefused extends NexusError {
  constructor(
    readonly reason: RefusalReason,
    message: string,
    suggestion: string,
  ) {
    super('unauthorized', message, { suggestion });
  }
}

/** `nxat_<token id, 32 hex>_<secret>`: the id finds the row, only the secret is hashed. */
const TOKEN_PATTERN = /^nxat_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;
const TOUCH_EVERY_MS = 60_000;

/**
 * API tokens and projects: minting (the secret shown once, a salted scrypt hash kept), fast
 * verification (a brief cache of verified tokens), rotation with an overlap, revocation, the first
 * admin token of an empty database, and project quotas.
 */
export class AccessService {
  private readonly verified = new Map<string, { principal: Principal; until: number }>();
  /**
   * Which stored slow hash each bearer (by its SHA-256) was proven against. When a token's brief
   * trust lapses its row is read again (revocation, expiry, rotation), but the slow hash is only
   * recomputed if the row's hash changed: scrypt runs once per token secret, not twice a second.
   */
  private readonly proven = new Map<string, string>();
  /** Verifications under way, so callers arriving together with one token share one. */
  private readonly verifying = new Map<string, Promise<Principal>>();
  /** Wrong secrets per token id in the current minute (each check counted before it runs). */
  private readonly wrongSecrets = new WindowCounter(60_000);
  private readonly counts = { secretChecks: 0, secretChecksRefused: 0 };

  constructor(
    private readonly tokens: TokenRepo,
    private readonly projects: ProjectRepo,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly config: AccessServiceConfig,
  ) {}

  /** The caller a bearer token names: 401 for a missing, unknown, expired, revoked or wrong one. */
  async authenticate(bearer: string | undefined): Promise<Principal> {
    if (bearer === undefined) {
      throw new TokenRefused(
        'token_missing',
        'an API token is required',
        'Send Authorization: Bearer <token>; `nexus dev` keeps the first admin token in <data-dir>/admin.token.',
      );
    }
    const now = this.clock.now().getTime();
    const key = createHash('sha256').update(bearer).digest('hex');
    const cached = this.verified.get(key);
    if (cached && cached.until > now) return cached.principal;
    this.verified.delete(key);
    const pending = this.verifying.get(key);
    if (pending) return pending;
    const verification = this.verify(bearer, key, now).finally(() => this.verifying.delete(key));
    this.verifying.set(key, verification);
    return verification;
  }

  private async verify(bearer: string, key: string, now: number): Promise<Principal> {
    const refused = (reason: RefusalReason) =>
      new TokenRefused(reason, 'the API token is not valid (unknown, expired, revoked or rotated)', 'Ask an admin for a new token.');
    const match = TOKEN_PATTERN.exec(bearer);
    if (!match) throw refused('token_malformed');
    const record = await this.tokens.get(uuidOf(match[1] ?? ''));
    if (!record) throw refused('token_unknown');
    if (record.revokedAt) throw refused('token_revoked');
    if (record.expiresAt && record.expiresAt.getTime() <= now) throw refused('token_expired');
    const secret = match[2] ?? '';
    const provenHash = this.proven.get(key);
    const previousValid = record.previousSecretHash !== null && record.previousValidUntil !== null && record.previousValidUntil.getTime() > now;
    const matches = (stored: string) => provenHash === stored || this.checkSecret(record.id, secret, stored, now);
    // A bearer proven against the old secret (during a rotation's overlap) is not hashed against the new one each time.
    const provenPrevious = previousValid && provenHash !== undefined && provenHash === record.previousSecretHash;
    const current = !provenPrevious && (await matches(record.secretHash));
    const previous = !current && previousValid && record.previousSecretHash ? await matches(record.previousSecretHash) : false;
    if (!current && !previous) {
      this.proven.delete(key);
      // A bearer proven before whose hash is no longer the token's: its secret was rotated away.
      throw refused(provenHash === undefined ? 'token_invalid' : 'token_rotated');
    }
    this.remember(key, current ? record.secretHash : (record.previousSecretHash ?? ''));

    const principal: Principal = { tokenId: record.id, owner: record.owner, role: record.role, project: record.project };
    // Trusted briefly; never past the token's own expiry or the old secret's overlap.
    const limits = [now + this.config.cacheMs, record.expiresAt?.getTime(), previous ? record.previousValidUntil?.getTime() : undefined];
    this.verified.set(key, { principal, until: Math.min(...limits.filter((limit): limit is number => limit !== undefined)) });
    if (!record.lastUsedAt || now - record.lastUsedAt.getTime() > TOUCH_EVERY_MS) {
      this.tokens
        .touch(record.id, this.clock.now())
        .catch((error: unknown) => this.log.warn({ err: error, token_id: record.id }, 'could not record the token use'));
    }
    return principal;
  }

  /**
   * Runs the slow hash, unless the token id has had its minute's share of wrong secrets: then 429.
   * Each check counts as wrong until it proves right, so a burst of guesses sent at once cannot
   * all slip under the limit while their hashes run.
   */
  private async checkSecret(tokenId: string, secret: string, stored: string, now: number): Promise<boolean> {
    const wrong = this.wrongSecrets.add(tokenId, now);
    if (wrong.count > this.config.wrongSecretsPerTokenPerMinute) {
      this.wrongSecrets.remove(tokenId, now); // refused unchecked: not a wrong secret
      this.counts.secretChecksRefused++;
      const retryAfterSeconds = Math.max(1, Math.ceil((wrong.endsAt - now) / 1000));
      throw new NexusError('rate_limited', `more than ${this.config.wrongSecretsPerTokenPerMinute} wrong secrets for one token in a minute`, {
        suggestion: `Retry after ${retryAfterSeconds} s with the right token.`,
        retryAfterSeconds,
      });
    }
    this.counts.secretChecks++;
    const right = await verifySlowHash(secret, stored);
    if (right) this.wrongSecrets.remove(tokenId, now);
    return right;
  }

  /** Slow-hash checks run and refused (over a token id's limit) since start, for /metrics. */
  secretCheckCounts(): { run: number; refused: number } {
    return { run: this.counts.secretChecks, refused: this.counts.secretChecksRefused };
  }

  private remember(key: string, secretHash: string): void {
    // Bounded: past the cap the oldest proofs go (they are redone with scrypt when next needed).
    this.proven.delete(key);
    this.proven.set(key, secretHash);
    if (this.proven.size > MAX_PROVEN) this.proven.delete(this.proven.keys().next().value as string);
  }

  async mint(request: CreateTokenRequest): Promise<TokenWithSecret> {
    if (request.role !== 'admin' && !request.project) {
      throw new NexusError('validation_failed', `a ${request.role} token needs a project`, {
        suggestion: 'Give project; only admin tokens span every project.',
      });
    }
    // An admin acts on every project (domain/access-policy): a project on its token would promise
    // a limit nothing enforces.
    if (request.role === 'admin' && request.project !== undefined) {
      throw new NexusError('validation_failed', 'an admin token spans every project: it takes no project', {
        suggestion: `Leave project out, or mint an operator token with project ${request.project} to act on that project only.`,
      });
    }
    const expiresAt = request.expires_at === undefined ? null : parseTimestamp(request.expires_at, 'expires_at');
    if (expiresAt && expiresAt <= this.clock.now()) throw new NexusError('validation_failed', 'expires_at is in the past');
    const secret = randomBytes(32).toString('base64url');
    const record = await this.tokens.create({
      project: request.project ?? null,
      owner: request.owner,
      role: request.role,
      secretHash: await slowHash(secret),
      expiresAt,
    });
    this.log.info({ event: 'token_minted', token_id: record.id, owner: record.owner, role: record.role, project: record.project }, 'API token minted');
    return { ...toToken(record), token: tokenString(record.id, secret) };
  }

  async list(): Promise<Token[]> {
    return (await this.tokens.list()).map(toToken);
  }

  /** A new secret for the token; the old one works `overlapSeconds` longer (0: not at all). */
  async rotate(id: string, overlapSeconds: number): Promise<TokenWithSecret> {
    const secret = randomBytes(32).toString('base64url');
    const until = overlapSeconds > 0 ? new Date(this.clock.now().getTime() + overlapSeconds * 1000) : null;
    const record = await this.tokens.rotate(id, await slowHash(secret), until);
    if (!record) throw new NexusError('not_found', `no active token ${id}`, { suggestion: 'GET /v1/tokens lists them; a revoked token cannot be rotated.' });
    this.forget(id);
    this.log.info({ event: 'token_rotated', token_id: id, overlap_seconds: overlapSeconds }, 'API token rotated');
    return { ...toToken(record), token: tokenString(id, secret) };
  }

  async revoke(id: string): Promise<Token> {
    const record = await this.tokens.revoke(id, this.clock.now());
    if (!record) throw new NexusError('not_found', `no token ${id}`);
    this.forget(id);
    this.log.info({ event: 'token_revoked', token_id: id }, 'API token revoked');
    return toToken(record);
  }

  /** The first admin token, minted only when the database has none; shown to the operator once. */
  async bootstrap(): Promise<string | undefined> {
    if ((await this.tokens.count()) > 0) return undefined;
    const minted = await this.mint({ owner: 'bootstrap-admin', role: 'admin' });
    return minted.token;
  }

  async listProjects(): Promise<Project[]> {
    return (await this.projects.list()).map(toProject);
  }

  async createProject(request: CreateProjectRequest): Promise<Project> {
    return toProject(
      await this.projects.create(request.name, {
        maxVms: request.max_vms ?? null,
        maxVcpus: request.max_vcpus ?? null,
        maxMemoryMib: request.max_memory_mib ?? null,
      }),
    );
  }

  async setQuotas(name: string, quotas: ProjectQuotas): Promise<Project> {
    const updated = await this.projects.setQuota(name, { maxVms: quotas.max_vms, maxVcpus: quotas.max_vcpus, maxMemoryMib: quotas.max_memory_mib });
    if (!updated) throw new NexusError('not_found', `no project ${name}`);
    return toProject(updated);
  }

  /**
   * The check a new VM of `vcpu` and `memMib` must pass to enter `project`, for the VM store to
   * run under the project's lock: a VM the project has no room for is refused with 403
   * `quota_exceeded`, naming the quota.
   */
  quotaCheck(project: string, vcpu: number, memMib: number): QuotaCheck {
    return (quota, usage) => {
      const broken = brokenQuota(quota, usage, vcpu, memMib);
      if (broken) {
        throw new NexusError('quota_exceeded', `project ${project} is at its quota: ${broken}`, {
          suggestion: 'Delete VMs in the project, or ask an admin to raise its quota (PATCH /v1/projects/:name).',
        });
      }
    };
  }

  private forget(tokenId: string): void {
    for (const [key, entry] of this.verified) if (entry.principal.tokenId === tokenId) this.verified.delete(key);
  }
}

function uuidOf(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function tokenString(id: string, secret: string): string {
  return `nxat_${id.replaceAll('-', '')}_${secret}`;
}

function toToken(record: TokenRecord): Token {
  return {
    id: record.id,
    owner: record.owner,
    role: record.role,
    project: record.project,
    expires_at: record.expiresAt?.toISOString() ?? null,
    revoked_at: record.revokedAt?.toISOString() ?? null,
    last_used_at: record.lastUsedAt?.toISOString() ?? null,
    created_at: record.createdAt.toISOString(),
  };
}

function toProject(record: ProjectRecord): Project {
  return {
    name: record.name,
    max_vms: record.maxVms,
    max_vcpus: record.maxVcpus,
    max_memory_mib: record.maxMemoryMib,
    created_at: record.createdAt.toISOString(),
  };
}
