import type { HostCapacity } from '../../contracts/agent-api.js';
import type { HostStatus } from '../../contracts/host-api.js';

export interface HostRecord {
  id: string;
  name: string;
  address: string;
  status: HostStatus;
  capacity: HostCapacity;
  /**
   * The credential the manager presents to the agent, sealed as it is stored: it is opened only
   * by the agent gateway, as it calls this host's agent, so a record carries no clear secret and
   * a credential that does not open fails the calls to its own host only.
   */
  credentialSealed: string;
  /** SHA-256 of the credential: what the agent's heartbeats are checked against. */
  credentialHash: string;
  /** Set while a rotation is under way: SHA-256 of the credential the agent is being given. */
  nextCredentialHash: string | null;
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

/** A host's next credential while a rotation is under way, as stored. */
export interface NextCredential {
  /** Sealed: the agent gateway opens it to hand it to the agent. */
  sealed: string;
  /** SHA-256: what completing the rotation checks. */
  hash: string;
}

export type JoinTokenState = 'unknown' | 'used' | 'expired';

/**
 * How an enrollment went. `enrolled`: a new host; `reenrolled`: an unreachable host of that name
 * taken over (an agent that lost its state dir comes back so); `replaced`: a ready host taken over
 * with a token minted to replace it. Refused: the token is not valid (`unknown`, `used`,
 * `expired`), a ready host has the name and the token may not replace it (`host_ready`), or the
 * token was minted to replace another host (`wrong_host`). A refused enrollment uses up nothing.
 */
export type EnrollOutcome =
  | { ok: true; host: HostRecord; tokenId: string; kind: 'enrolled' | 'reenrolled' | 'replaced' }
  | { ok: false; reason: JoinTokenState; tokenId?: string }
  | { ok: false; reason: 'host_ready'; tokenId: string; host: HostRecord }
  | { ok: false; reason: 'wrong_host'; tokenId: string; replaceHost: string };

/** A host a liveness sweep found late. */
export interface LateHost {
  id: string;
  name: string;
  lastSeenAt: Date;
}

/** Hosts and the join tokens that admit them. */
export interface HostRepo {
  /** `replaceHost`: the name of a host the token may replace while it is ready (default none). */
  createJoinToken(tokenHash: string, expiresAt: Date, replaceHost?: string | null): Promise<{ id: string }>;
  /**
   * Consumes a valid join token and registers the host in one transaction: a token admits one
   * host, once, even when two agents race with it. A host enrolling under an existing name takes
   * that host's record (same id, new credential) only while it is unreachable, or when the token
   * was minted to replace it: a join token alone cannot lock out a working agent.
   */
  enroll(tokenHash: string, host: NewHost, now: Date): Promise<EnrollOutcome>;
  /** Whether a host of that name exists. */
  existsNamed(name: string): Promise<boolean>;
  list(): Promise<HostRecord[]>;
  get(id: string): Promise<HostRecord | undefined>;
  /** Records a heartbeat; the host becomes `ready`. Answers its status before (undefined: no such host). */
  recordHeartbeat(id: string, address: string, capacity: HostCapacity, now: Date): Promise<HostStatus | undefined>;
  /** Marks `ready` hosts last seen before `seenBefore` as `unreachable`; returns them. */
  markLateHostsUnreachable(seenBefore: Date, now: Date): Promise<LateHost[]>;
  countReady(): Promise<number>;
  /**
   * Starts a rotation: records `next` as the host's next credential, unless a rotation is already
   * under way, whose credential is kept (a retry hands the agent the same one). Answers the next
   * credential as stored (sealed, and its hash), or undefined for an unknown host.
   */
  beginCredentialRotation(id: string, next: string): Promise<NextCredential | undefined>;
  /** Makes the credential under way the host's credential, if it is still the one of hash `nextHash`; false otherwise. */
  completeCredentialRotation(id: string, nextHash: string, now: Date): Promise<boolean>;
}
