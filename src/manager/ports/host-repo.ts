import type { HostCapacity } from '../../contracts/agent-api.js';
import type { HostStatus } from '../../contracts/host-api.js';

export interface HostRecord {
  id: string;
  name: string;
  address: string;
  status: HostStatus;
  capacity: HostCapacity;
  credential: string;
  /** Set while a rotation is under way: the credential the agent is being given. */
  nextCredential: string | null;
  credentialRotatedAt: Date | null;
  lastSeenAt: Date;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewHost {
  name: string;
  address: string;
  capacity: HostCapacity;
  credential: string;
}

export type JoinTokenState = 'unknown' | 'used' | 'expired';

export type EnrollOutcome =
  | { ok: true; host: HostRecord; reenrolled: boolean }
  | { ok: false; reason: JoinTokenState; tokenId?: string };

/** Hosts and the join tokens that admit them. */
export interface HostRepo {
  createJoinToken(tokenHash: string, expiresAt: Date): Promise<{ id: string }>;
  /**
   * Consumes a valid join token and registers the host in one transaction: a token admits one
   * host, once, even when two agents race with it. A host enrolling under an existing name takes
   * that host's record (same id, new credential): the join token is the authority.
   */
  enroll(tokenHash: string, host: NewHost, now: Date): Promise<EnrollOutcome>;
  list(): Promise<HostRecord[]>;
  get(id: string): Promise<HostRecord | undefined>;
  /** Records a heartbeat; the host becomes `ready`. */
  recordHeartbeat(id: string, address: string, capacity: HostCapacity, now: Date): Promise<void>;
  /** Marks `ready` hosts last seen before `seenBefore` as `unreachable`; returns their names. */
  markLateHostsUnreachable(seenBefore: Date, now: Date): Promise<string[]>;
  countReady(): Promise<number>;
  /**
   * Starts a rotation: records `next` as the host's next credential, unless a rotation is already
   * under way, whose credential is kept (a retry hands the agent the same one). Answers the next
   * credential, or undefined for an unknown host.
   */
  beginCredentialRotation(id: string, next: string): Promise<string | undefined>;
  /** Makes `next` the host's credential, if it is still the one under way; false otherwise. */
  completeCredentialRotation(id: string, next: string, now: Date): Promise<boolean>;
}
