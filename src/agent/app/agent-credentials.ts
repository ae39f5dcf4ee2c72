import type { Logger } from 'pino';
import { NexusError } from '../../kit/nexus-error.js';
import { secretsEqual } from '../../kit/secret.js';
import type { AgentIdentity, IdentityStore } from '../ports/identity-store.js';

/**
 * The credential this agent requires of every caller and presents to its manager. A rotation
 * saves the new one before using it, and accepts the old one `overlapMs` longer, so manager calls
 * already under way with it still land.
 */
export class AgentCredentials {
  private identity: AgentIdentity | undefined;
  private previous: { credential: string; until: number } | undefined;
  private replacing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: IdentityStore,
    private readonly overlapMs: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** The identity in force; undefined while the agent is still enrolling. */
  current(): AgentIdentity | undefined {
    return this.identity;
  }

  /** Puts an established identity (stored, or fresh from enrolling) in force. */
  establish(identity: AgentIdentity): void {
    this.identity = identity;
  }

  /** Whether `presented` is the credential in force, or the one it replaced less than the overlap ago. */
  accepts(presented: string | undefined): boolean {
    if (presented === undefined || this.identity === undefined) return false;
    if (secretsEqual(presented, this.identity.credential)) return true;
    if (this.previous === undefined) return false;
    if (this.now() >= this.previous.until) {
      this.previous = undefined;
      return false;
    }
    return secretsEqual(presented, this.previous.credential);
  }

  /** Saves `next` as the credential and puts it in force. Giving the one in force again changes nothing. */
  replace(next: string): Promise<void> {
    const run = this.replacing.then(() => this.replaceNow(next));
    this.replacing = run.catch(() => undefined);
    return run;
  }

  private async replaceNow(next: string): Promise<void> {
    const identity = this.identity;
    if (identity === undefined) throw new NexusError('conflict', 'the agent has no identity yet');
    if (secretsEqual(next, identity.credential)) return;
    const rotated = { ...identity, credential: next };
    // Saved first: an agent that restarts after answering must come back with the new credential.
    await this.store.save(rotated);
    this.previous = { credential: identity.credential, until: this.now() + this.overlapMs };
    this.identity = rotated;
    this.log.info({ event: 'credential_rotated', host_id: identity.enrollment?.hostId, overlap_ms: this.overlapMs }, 'credential rotated');
  }
}
